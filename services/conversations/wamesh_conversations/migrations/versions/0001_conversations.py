"""Conversations, their messages, statuses waiting for their message, and the outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("sender_number", sa.Text, nullable=False),
        sa.Column("customer_number", sa.Text, nullable=False),
        sa.Column("profile_name", sa.Text, nullable=False),
        sa.Column("last_message_at", _TS, nullable=False),
        sa.Column("last_inbound_at", _TS),
        sa.Column("window_open_until", _TS),
        sa.Column("unread_count", sa.Integer, nullable=False),
        sa.Column("read_through", _TS),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "sender_number", "customer_number"),
    )
    # ListConversations: a tenant's conversations, newest activity first (and unread only).
    op.create_index(
        "conversations_by_activity",
        "conversations",
        ["tenant_id", sa.text("last_message_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "conversations_unread_by_activity",
        "conversations",
        ["tenant_id", sa.text("last_message_at DESC"), sa.text("id DESC")],
        postgresql_where=sa.text("unread_count > 0"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        # Checked at the end of the statement: RecordInbound writes message and conversation
        # in one statement, message first.
        sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=False),
        sa.Column("direction", sa.SmallInteger, nullable=False),
        sa.Column("status", sa.SmallInteger, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("provider_sid", sa.Text, unique=True),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("error_code", sa.Integer, nullable=False),
        sa.Column("error_message", sa.Text, nullable=False),
        sa.Column("status_history", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.UniqueConstraint("tenant_id", "idempotency_key"),
    )
    # ListMessages: a conversation's messages, newest first.
    op.create_index(
        "messages_by_time",
        "messages",
        ["conversation_id", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.create_table(
        "pending_statuses",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("provider_sid", sa.Text, primary_key=True),
        sa.Column("status", sa.SmallInteger, primary_key=True),
        sa.Column("error_code", sa.Integer, nullable=False),
        sa.Column("error_message", sa.Text, nullable=False),
        sa.Column("occurred_at", _TS, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("message_type", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("traceparent", sa.Text, nullable=False),
        sa.Column("tracestate", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("published_at", _TS),
    )
    # The relay's work list stays small however long published rows are kept.
    op.create_index(
        "outbox_unpublished", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("pending_statuses")
    op.drop_table("messages")
    op.drop_table("conversations")
