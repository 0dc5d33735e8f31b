"""Whether each job is sent even to a recipient who opted out (the one STOP confirmation).

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
    # A constant default: Postgres adds the column without rewriting the table, and every
    # job already queued keeps the rule it was enqueued under.
    op.add_column(
        "jobs",
        sa.Column("despite_opt_out", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("jobs", "despite_opt_out")
