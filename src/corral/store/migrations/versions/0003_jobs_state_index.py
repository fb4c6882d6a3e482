"""One history again (merges the job-groups and instances branches); jobs indexed on (batch_id, state, job_id)

A conditional update `WHERE batch_id = ? AND job_id = ? AND state = ?` on a fresh PostgreSQL table (no
statistics yet) was planned on the (batch_id, state) index and filtered every Ready job of the batch per
row: 20,000 updates read 20,000 rows each. With job_id in the index the same plan is a point lookup.

Revision ID: 0003
Revises: 0002_instances, 0002_job_groups
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = ("0002_instances", "0002_job_groups")
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_batch_id_state")
        batch.create_index("ix_jobs_batch_id_state_job_id", ["batch_id", "state", "job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_batch_id_state_job_id")
        batch.create_index("ix_jobs_batch_id_state", ["batch_id", "state"], unique=False)
