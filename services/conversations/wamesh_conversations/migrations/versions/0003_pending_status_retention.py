"""When each pending status was kept aside, so the relay can sweep those left past retention.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Our clock, not the callback's occurred_at: that one is the caller's (and a replayed
    # spill carries an old one), so it cannot say how long the row has waited here. Rows
    # already waiting count from the upgrade.
    op.add_column(
        "pending_statuses",
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    # The sweep deletes a range of it; the table is not kept small by anything else.
    op.create_index("pending_statuses_by_age", "pending_statuses", ["created_at"])


def downgrade() -> None:
    op.drop_index("pending_statuses_by_age", "pending_statuses")
    op.drop_column("pending_statuses", "created_at")
