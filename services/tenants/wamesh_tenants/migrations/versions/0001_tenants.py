"""Tenants, their sender numbers and their encrypted Twilio credentials.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("create_request_id", sa.Text, nullable=False, unique=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("time_zone", sa.Text, nullable=False),
        sa.Column("default_language", sa.Text, nullable=False),
        sa.Column("support_contact", sa.Text, nullable=False),
        sa.Column("limits", postgresql.JSONB, nullable=False),
        sa.Column("bot", postgresql.JSONB, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('active', 'suspended')", name="tenants_status"),
    )
    op.create_index("tenants_status_id", "tenants", ["status", "id"])
    op.create_table(
        "sender_numbers",
        sa.Column("number", sa.Text, primary_key=True),
        sa.Column(
            "tenant_id",
            sa.Text,
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("messaging_service_sid", sa.Text, nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("sender_numbers_tenant", "sender_numbers", ["tenant_id"])
    op.create_table(
        "credentials",
        sa.Column(
            "tenant_id",
            sa.Text,
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("account_sid", sa.Text, nullable=False),
        sa.Column("api_key_sid", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("auth_token", sa.LargeBinary, nullable=False),
        sa.Column("api_key_secret", sa.LargeBinary, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("credentials_key_id", "credentials", ["key_id"])


def downgrade() -> None:
    op.drop_table("credentials")
    op.drop_table("sender_numbers")
    op.drop_table("tenants")
