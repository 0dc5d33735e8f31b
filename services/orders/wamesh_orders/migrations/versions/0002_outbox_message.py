"""Outbox calls remember the inbound message whose turn wrote them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("message_id", sa.Text))
    op.create_index("outbox_by_message", "outbox", ["message_id"])


def downgrade() -> None:
    op.drop_index("outbox_by_message", "outbox")
    op.drop_column("outbox", "message_id")
