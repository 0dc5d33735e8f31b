"""The orders database's tables, as SQLAlchemy Core sees them (migrations/ creates them).

A cart is an order in ``draft``. An order's lines are one JSONB array: written and read
whole with the order, never queried. ``tenants`` holds each tenant's two counters (order
numbers and watch positions); taking them under the row's lock makes both rise in commit
order, which is what lets WatchOrders resume from a position without missing an event.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

_TS = sa.DateTime(timezone=True)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, nullable=False),
    # Given at confirmation; NULL for a cart.
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
    # The customer's language when the order was confirmed: notifications speak it.
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("rating", sa.SmallInteger, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
    sa.UniqueConstraint("tenant_id", "number"),
    # ListOrders: a tenant's orders newest first, optionally one customer's.
    sa.Index("orders_by_tenant", "tenant_id", sa.text("created_at DESC"), sa.text("id DESC")),
    sa.Index("orders_by_customer", "tenant_id", "customer_number", sa.text("created_at DESC")),
    # The expiry sweep looks only at carts.
    sa.Index("carts_by_age", "updated_at", postgresql_where=sa.text("state = 'draft'")),
)

history = sa.Table(
    "order_history",
    metadata,
    sa.Column("order_id", sa.Text, sa.ForeignKey("orders.id"), primary_key=True),
    sa.Column("version", sa.BigInteger, primary_key=True),
    sa.Column("from_state", sa.Text, nullable=False),
    sa.Column("to_state", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.Column("occurred_at", _TS, nullable=False),
)

# The WatchOrders feed: one row per transition of a confirmed order, by tenant position.
events = sa.Table(
    "order_events",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("position", sa.BigInteger, primary_key=True),
    sa.Column("order_id", sa.Text, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
)

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("last_order_number", sa.BigInteger, nullable=False),
    sa.Column("last_position", sa.BigInteger, nullable=False),
)

# The bot's memory of each customer: the conversation's stage, language and cart lines.
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("tenant_id", sa.Text, primary_key=True),
    sa.Column("customer_number", sa.Text, primary_key=True),
    sa.Column("session", postgresql.JSONB, nullable=False),
    sa.Column("updated_at", _TS, nullable=False),
)

# Inbound messages already handled: written in the transaction that acts on one, so a
# redelivered or replayed event finds its row and changes nothing. Forgotten past
# ``processed_retention_s``, by then longer than any redelivery or republished window.
processed = sa.Table(
    "processed_messages",
    metadata,
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("processed_at", _TS, nullable=False),
    sa.Index("processed_by_age", "processed_at"),
)

# Calls to other services, written with the change that causes them and deleted once made
# (each is idempotent on its key, so making one twice is harmless): messages for the
# dispatcher, opt-outs for the conversation store.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    # The order the calls were written in: a customer's replies leave in that order.
    sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
    # The inbound message whose turn wrote it (none for a staff RPC): a redelivered message
    # hands on its own calls, not the whole outbox.
    sa.Column("message_id", sa.Text),
    sa.Column("tenant_id", sa.Text, nullable=False),
    # "enqueue": a serialized dispatch.v1.EnqueueRequest; "opt_out": a conversations.v1
    # SetOptOutRequest (the customer's STOP or START, for the conversation store).
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("request", sa.LargeBinary, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Index("outbox_in_order", "seq"),
    sa.Index("outbox_by_message", "message_id"),
)
