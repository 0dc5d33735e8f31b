"""When the customer of each conversation opted out of its sender's messages (NULL: not).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable with no default: adding it rewrites nothing, and every conversation starts
    # opted in.
    op.add_column("conversations", sa.Column("opted_out_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("conversations", "opted_out_at")
