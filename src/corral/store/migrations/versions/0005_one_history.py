"""One history again: joins the five branches made in parallel (billing ledger, waiting reasons, service
jobs, usage samples, collection health). Each touched different tables, so the join changes nothing.

Revision ID: 0005
Revises: 0004_billing, 0004_integrity, 0004_sessions, 0004_ui, 0004_userview
"""

from __future__ import annotations

revision = "0005"
down_revision = ("0004_billing", "0004_integrity", "0004_sessions", "0004_ui", "0004_userview")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
