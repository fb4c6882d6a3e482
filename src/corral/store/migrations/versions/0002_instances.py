"""GPUs on jobs and instances; job-private instances reserved for one job

Revision ID: 0002_instances
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_instances"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("gpus", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("gpu_type", sa.String(length=100), nullable=True))
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("gpus", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("gpu_type", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("reserved_for", sa.String(length=60), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("reserved_for")
        batch.drop_column("gpu_type")
        batch.drop_column("gpus")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("gpu_type")
        batch.drop_column("gpus")
