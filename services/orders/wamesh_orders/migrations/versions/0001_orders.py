"""Orders and carts, their history, the watch feed, the bot's sessions, the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("number", sa.BigInteger),
        sa.Column("customer_number", sa.Text, nullable=False),
        sa.Column("sender_number", sa.Text, nullable=False),
        sa.Column("conversation_id", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("lines", postgresql.JSONB, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("rating", sa.SmallInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "number"),
    )
    op.create_index(
        "orders_by_tenant",
        "orders",
        ["tenant_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "orders_by_customer",
        "orders",
        ["tenant_id", "customer_number", sa.text("created_at DESC")],
    )
    op.create_index(
        "carts_by_age", "orders", ["updated_at"], postgresql_where=sa.text("state = 'draft'")
    )
    op.create_table(
        "order_history",
        sa.Column("order_id", sa.Text, sa.ForeignKey("orders.id"), primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("from_state", sa.Text, nullable=False),
        sa.Column("to_state", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
    )
    op.create_table(
        "order_events",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("position", sa.BigInteger, primary_key=True),
        sa.Column("order_id", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("last_order_number", sa.BigInteger, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "customers",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("customer_number", sa.Text, primary_key=True),
        sa.Column("session", postgresql.JSONB, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "processed_messages",
        sa.Column("message_id", sa.Text, primary_key=True),
        sa.Column("processed_at", _TS, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("idempotency_key", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("request", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("outbox_in_order", "outbox", ["seq"])


def downgrade() -> None:
    for table in (
        "outbox",
        "processed_messages",
        "customers",
        "tenants",
        "order_events",
        "order_history",
        "orders",
    ):
        op.drop_table(table)
