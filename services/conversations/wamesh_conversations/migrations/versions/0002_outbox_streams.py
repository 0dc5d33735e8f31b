"""The last entry the outbox relay appended to each stream, to notice a stream that lost it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_streams",
        sa.Column("stream", sa.Text, primary_key=True),
        # A Redis stream entry id, "<ms>-<seq>", as XADD returned it.
        sa.Column("last_entry_id", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox_streams")
