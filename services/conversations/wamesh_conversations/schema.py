"""The conversations database's tables, as SQLAlchemy Core sees them (migrations/ creates them).

Message content other than the body (media, location, buttons, template, inbound details)
is one serialized protobuf ``Message`` in ``content``: it is written and read whole, never
queried, and protobuf is cheaper to produce than JSON on the hot path.
``status_history`` is likewise a serialized ``Message`` holding only ``status_history``;
protobuf's repeated fields append on concatenation, so a status is added with ``||``.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

conversations = sa.Table(
    "conversations",
    metadata,
    # Derived from (tenant, sender, customer): every writer computes the same id.
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("sender_number", sa.Text, nullable=False),
    sa.Column("customer_number", sa.Text, nullable=False),
    sa.Column("profile_name", sa.Text, nullable=False),
    sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_inbound_at", sa.DateTime(timezone=True)),
    sa.Column("window_open_until", sa.DateTime(timezone=True)),
    sa.Column("unread_count", sa.Integer, nullable=False),
    sa.Column("read_through", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # Since when the customer wants no messages from this sender (STOP, or Twilio's 21610);
    # NULL while they are opted in. Outbound messages are refused while it is set.
    sa.Column("opted_out_at", sa.DateTime(timezone=True)),
    # What the upserts collide on: one conversation per tenant, sender and customer.
    sa.UniqueConstraint("tenant_id", "sender_number", "customer_number"),
    # ListConversations: a tenant's conversations, newest activity first (and unread only).
    sa.Index(
        "conversations_by_activity",
        "tenant_id",
        sa.text("last_message_at DESC"),
        sa.text("id DESC"),
    ),
    sa.Index(
        "conversations_unread_by_activity",
        "tenant_id",
        sa.text("last_message_at DESC"),
        sa.text("id DESC"),
        postgresql_where=sa.text("unread_count > 0"),
    ),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("direction", sa.SmallInteger, nullable=False),
    sa.Column("status", sa.SmallInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    # Twilio MessageSid: the inbound idempotency key; NULL until Twilio accepts an outbound.
    sa.Column("provider_sid", sa.Text, unique=True),
    # The dispatcher's key for an outbound message; NULL for inbound.
    sa.Column("idempotency_key", sa.Text),
    sa.Column("error_code", sa.Integer, nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column("status_history", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("tenant_id", "idempotency_key"),
    # ListMessages: a conversation's messages, newest first.
    sa.Index("messages_by_time", "conversation_id", sa.text("created_at DESC"), sa.text("id DESC")),
)

# Status callbacks that beat the send response: applied when their SID is attached, or
# swept once past their retention (a send that never reported back, or no message of ours).
pending_statuses = sa.Table(
    "pending_statuses",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("provider_sid", sa.Text, primary_key=True),
    sa.Column("status", sa.SmallInteger, primary_key=True),
    sa.Column("error_code", sa.Integer, nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    # When it was kept aside (this server's clock): the relay sweeps those past retention.
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Index("pending_statuses_by_age", "created_at"),
)

# Events committed with the write that caused them; the relay moves them to Redis Streams.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("stream", sa.Text, nullable=False),
    # The stream entry's fields as they will be sent: the protobuf type and payload, and the
    # W3C trace context of the request that caused the event.
    sa.Column("message_type", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("traceparent", sa.Text, nullable=False),
    sa.Column("tracestate", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    # The relay's work list stays small however long published rows are kept.
    sa.Index("outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
)

# Per stream, the id of the last entry the relay appended, written with the rows it marked
# published: a stream whose last generated id is lower lost entries (FLUSHALL, a restart
# without persistence, a failover to a lagging replica), and its retained rows go again.
outbox_streams = sa.Table(
    "outbox_streams",
    metadata,
    sa.Column("stream", sa.Text, primary_key=True),
    sa.Column("last_entry_id", sa.Text, nullable=False),
)
