"""Handled inbound messages are forgotten past their retention, oldest first: index them by
when they were handled.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("processed_by_age", "processed_messages", ["processed_at"])


def downgrade() -> None:
    op.drop_index("processed_by_age", "processed_messages")
