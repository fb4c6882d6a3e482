"""Billing ledger: versioned rates, per-attempt charges accrued while attempts run, usage roll-ups per
batch and per (billing project, user, day)

Revision ID: 0004_billing
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_billing"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "billing_rates",
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("time_effective", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("resource", "version", name="pk_billing_rates"),
    )
    op.create_table(
        "attempt_charges",
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("billing_project", sa.String(100), nullable=False),
        sa.Column("user", sa.String(100), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("accrued_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "job_id", "attempt_id", name="pk_attempt_charges"),
    )
    op.create_index("ix_attempt_charges_ended", "attempt_charges", ["ended"], unique=False)
    op.create_table(
        "batch_usage",
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("usage", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "resource", name="pk_batch_usage"),
    )
    op.create_table(
        "daily_usage",
        sa.Column("billing_project", sa.String(100), nullable=False),
        sa.Column("user", sa.String(100), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("usage", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("billing_project", "user", "day", "resource", name="pk_daily_usage"),
    )


def downgrade() -> None:
    op.drop_table("daily_usage")
    op.drop_table("batch_usage")
    op.drop_index("ix_attempt_charges_ended", table_name="attempt_charges")
    op.drop_table("attempt_charges")
    op.drop_table("billing_rates")
