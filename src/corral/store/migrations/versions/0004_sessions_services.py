"""Service jobs (endpoint, time serving, ready-links) and benchmark sessions with their results

Revision ID: 0004_sessions
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_sessions"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("endpoint", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("time_serving", sa.Float(), nullable=True))
    with op.batch_alter_table("job_parents") as batch:
        batch.add_column(sa.Column("when_ready", sa.Boolean(), nullable=False, server_default="0"))
    op.create_table(
        "bench_sessions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("user", sa.String(length=100), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=True),
        sa.Column("recipe", sa.JSON(), nullable=False),
        sa.Column("recipe_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=True),
        sa.Column("time_created", sa.Float(), nullable=False),
        sa.Column("time_completed", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bench_sessions")),
    )
    op.create_index("ix_bench_sessions_user_id", "bench_sessions", ["user", "id"], unique=False)
    op.create_table(
        "bench_results",
        sa.Column("session_id", sa.BigInteger(), nullable=False),
        sa.Column("cell", sa.String(length=200), nullable=False),
        sa.Column("repetition", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=100), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=20), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["bench_sessions.id"],
                                name=op.f("fk_bench_results_session_id_bench_sessions")),
        sa.PrimaryKeyConstraint("session_id", "cell", "repetition", "client", "metric",
                                name=op.f("pk_bench_results")),
    )
    op.create_index("ix_bench_results_session_id_metric", "bench_results", ["session_id", "metric"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_bench_results_session_id_metric", table_name="bench_results")
    op.drop_table("bench_results")
    op.drop_index("ix_bench_sessions_user_id", table_name="bench_sessions")
    op.drop_table("bench_sessions")
    with op.batch_alter_table("job_parents") as batch:
        batch.drop_column("when_ready")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("time_serving")
        batch.drop_column("endpoint")
