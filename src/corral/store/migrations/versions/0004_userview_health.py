"""Collection health (can the provider bring instances up?), instances' host names and end reasons

Revision ID: 0004_userview
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_userview"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance_collections") as batch:
        batch.add_column(sa.Column("health", sa.String(length=20), nullable=False, server_default="ok"))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("time_last_error", sa.Float(), nullable=True))
        batch.add_column(sa.Column("n_failures", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("host_name", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("end_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("end_reason")
        batch.drop_column("host_name")
    with op.batch_alter_table("instance_collections") as batch:
        batch.drop_column("n_failures")
        batch.drop_column("time_last_error")
        batch.drop_column("last_error")
        batch.drop_column("health")
