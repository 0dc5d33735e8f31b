"""The tables of the tenants database, as SQLAlchemy Core sees them (migrations/ creates them)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    # The CreateTenant idempotency key: a retry finds the tenant its first attempt made.
    sa.Column("create_request_id", sa.Text, nullable=False, unique=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("time_zone", sa.Text, nullable=False),
    sa.Column("default_language", sa.Text, nullable=False),
    sa.Column("support_contact", sa.Text, nullable=False),
    # Limits and BotSettings in protobuf's JSON form: read and written whole, never queried.
    sa.Column("limits", postgresql.JSONB, nullable=False),
    sa.Column("bot", postgresql.JSONB, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # ListTenants by status, in id order.
    sa.Index("tenants_status_id", "status", "id"),
)

sender_numbers = sa.Table(
    "sender_numbers",
    metadata,
    # E.164; the primary key is what makes a number belong to at most one tenant.
    sa.Column("number", sa.Text, primary_key=True),
    sa.Column(
        "tenant_id", sa.Text, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("messaging_service_sid", sa.Text, nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("sender_numbers_tenant", "tenant_id"),
)

credentials = sa.Table(
    "credentials",
    metadata,
    sa.Column(
        "tenant_id", sa.Text, sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("account_sid", sa.Text, nullable=False),
    sa.Column("api_key_sid", sa.Text, nullable=False),
    # Which credential key sealed auth_token and api_key_secret (nonce || AES-GCM output).
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("auth_token", sa.LargeBinary, nullable=False),
    sa.Column("api_key_secret", sa.LargeBinary, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Key rotation finds the rows still sealed by an old key.
    sa.Index("credentials_key_id", "key_id"),
)
