"""Sessions move in two steps: the holder stops, then the next worker starts; and since
when a session has waited for a worker.

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
    op.add_column(
        "sessions",
        sa.Column("moving_to", sa.Text, sa.ForeignKey("workers.id"), nullable=True),
    )
    op.create_index("sessions_moving_to", "sessions", ["moving_to"])
    op.add_column("sessions", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("sessions", "waiting_since")
    op.drop_index("sessions_moving_to", table_name="sessions")
    op.drop_column("sessions", "moving_to")
