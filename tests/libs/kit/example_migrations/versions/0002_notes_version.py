"""Add an optimistic-concurrency version to notes.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "notes", sa.Column("version", sa.BigInteger(), nullable=False, server_default="1")
    )
    op.create_index("notes_created_at", "notes", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("notes_created_at", table_name="notes")
    op.drop_column("notes", "version")
