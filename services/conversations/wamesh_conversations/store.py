"""Postgres, the conversation store: every write is atomic with the events it causes.

RecordInbound is the hot path (every webhook waits on it), so it is one statement: the
message insert (a repeated MessageSid inserts nothing), the conversation upsert and the
outbox row are CTEs fed by that insert, so a duplicate touches nothing and a new message
is never stored without its event, or the reverse. One statement in autocommit is one
round trip and its own transaction.

The three write statements share their parts: each is put together below from one builder
per part (the message insert, the conversation upsert, the event insert), so a column or an
upsert rule is written once. An inbound message's parameters are one :class:`InboundRow`:
the single statement binds its fields by name, the batch one binds one array per field.

A conversation's opt-out is read in the very statement whose write it decides: an inbound
event says whether the customer had opted out when the message was stored (the flag is
appended to its payload in SQL, from the upserted row), and an outbound message to a customer
who opted out is stored FAILED with 21610 instead of PENDING.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, get_type_hints

import sqlalchemy as sa
from google.protobuf.message import Message as ProtoMessage
from opentelemetry import propagate
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.events.v1 import events_pb2
from wamesh_conversations import statuses
from wamesh_conversations.mapping import (
    conversation_of,
    inbound_content,
    message_from,
    message_of,
    outbound_content,
)
from wamesh_conversations.schema import conversations, messages, outbox, pending_statuses
from wamesh_conversations.validation import Participants
from wamesh_kit.errors import AlreadyExists, FailedPrecondition, NotFound
from wamesh_kit.keys import stream_key
from wamesh_kit.streams import FIELD_PAYLOAD, FIELD_TYPE, encode_entry
from wamesh_kit.timestamps import timestamp

__all__ = [
    "INBOUND_STREAM",
    "OPTED_OUT_CODE",
    "STATUSES_STREAM",
    "BatchOutcome",
    "ConversationStore",
    "InboundItem",
    "InboundRow",
    "StatusChange",
    "conversation_id_for",
    "timestamp",  # tools/bench builds its seed rows with it
]

INBOUND_STREAM = stream_key("inbound")
STATUSES_STREAM = stream_key("statuses")
_CONVERSATION_IDS = uuid.UUID("6c1e3f0e-2f57-4c43-9a35-0c7f2b8f9d10")
_INBOUND, _OUTBOUND = pb.DIRECTION_INBOUND, pb.DIRECTION_OUTBOUND
# Twilio's "attempt to send to unsubscribed recipient": what an outbound message to a customer
# who opted out is failed with, before it ever reaches Twilio.
OPTED_OUT_CODE = 21610
OPTED_OUT_MESSAGE = "the customer opted out of messages from this sender"
# Protobuf concatenation merges, the last value of a field winning: appended to a serialized
# InboundMessageEvent, these bytes set its customer_opted_out.
_OPTED_OUT_FLAG = events_pb2.InboundMessageEvent(customer_opted_out=True).SerializeToString()
# The RecordInbound statements' parameters that are the same for every message (with
# recorded_at, the same for every message of a call).
_INBOUND_FIXED: Mapping[str, Any] = {
    "direction": _INBOUND,
    "status": pb.MESSAGE_STATUS_RECEIVED,
    "stream": INBOUND_STREAM,
    "message_type": events_pb2.InboundMessageEvent.DESCRIPTOR.full_name,
}


def conversation_id_for(tenant_id: str, participants: Participants) -> str:
    """The id of a conversation, from its three keys: every writer derives the same one."""
    key = f"{tenant_id}\x00{participants.sender_number}\x00{participants.customer_number}"
    return str(uuid.uuid5(_CONVERSATION_IDS, key))


@dataclass(frozen=True)
class StatusChange:
    status: pb.MessageStatus.ValueType
    occurred_at: datetime
    error_code: int = 0
    error_message: str = ""


@dataclass(frozen=True)
class InboundItem:
    request: pb.RecordInboundRequest
    participants: Participants
    received_at: datetime


@dataclass(frozen=True)
class BatchOutcome:
    message_id: str
    conversation_id: str
    duplicate: bool
    refusal: AlreadyExists | None = None


class InboundRow(NamedTuple):
    """One inbound message's parameters of the RecordInbound statements, each named as the
    statements name it: ``_RECORD_INBOUND`` binds them as they are, ``_RECORD_INBOUND_BATCH``
    one array per field (its ``unnest`` is generated from these fields and their types)."""

    message_id: str
    tenant_id: str
    conversation_id: str
    body: str
    content: bytes
    provider_sid: str
    history: bytes
    received_at: datetime
    sender_number: str
    customer_number: str
    profile_name: str
    payload: bytes  # the serialized InboundMessageEvent
    traceparent: str
    tracestate: str


# The statements' parts. Each builder returns SQL text for sa.text(); its arguments are SQL
# fragments written in this module, never input.

_MessageKey = Literal["provider_sid", "idempotency_key"]
# The unique key a repeat of each kind of message collides on.
_REPEAT_OF: dict[_MessageKey, str] = {
    "provider_sid": "provider_sid",
    "idempotency_key": "tenant_id, idempotency_key",
}


def _insert_messages(rows: str, *, key: _MessageKey, returning: str) -> str:
    """INSERT of messages, where one whose ``key`` is already stored inserts nothing.

    ``rows`` (a VALUES list or a SELECT) gives every column, in the order listed here.
    """
    return f"""
        INSERT INTO messages (id, tenant_id, conversation_id, direction, status, body, content,
                              {key}, error_code, error_message, status_history,
                              created_at, updated_at)
        {rows}
        ON CONFLICT ({_REPEAT_OF[key]}) DO NOTHING
        RETURNING {returning}"""


def _upsert_conversations(rows: str, *, update: str, returning: str | None = None) -> str:
    """INSERT of conversations, or ``update`` of the one with the same three keys.

    ``rows`` (a SELECT) gives every column, in the order listed here; in ``update``,
    ``c`` is the stored conversation and ``excluded`` the row that found it.
    """
    statement = f"""
        INSERT INTO conversations AS c (id, tenant_id, sender_number, customer_number,
                                        profile_name, last_message_at, last_inbound_at,
                                        window_open_until, unread_count, created_at)
        {rows}
        ON CONFLICT (tenant_id, sender_number, customer_number) DO UPDATE SET{update}"""
    return statement if returning is None else f"{statement}\n        RETURNING {returning}"


def _inbound_arrived(*, unread: str) -> str:
    """The update of a conversation inbound messages arrived in; ``unread``: how many of
    them count as unread (those after its read_through)."""
    return f"""
            profile_name = CASE WHEN excluded.profile_name <> '' THEN excluded.profile_name
                                ELSE c.profile_name END,
            last_message_at = GREATEST(c.last_message_at, excluded.last_message_at),
            last_inbound_at = GREATEST(c.last_inbound_at, excluded.last_inbound_at),
            window_open_until = GREATEST(c.window_open_until, excluded.window_open_until),
            unread_count = c.unread_count + ({unread})"""


_OUTBOUND_SENT = """
            last_message_at = GREATEST(c.last_message_at, excluded.last_message_at)"""


def _insert_events(rows: str) -> str:
    """INSERT of outbox rows; ``rows`` (a SELECT) gives every column, in the order listed."""
    return f"""
        INSERT INTO outbox (stream, message_type, payload, traceparent, tracestate, created_at)
        {rows}"""


def _flagged(payload: str, conversation: str) -> str:
    """``payload`` (a serialized InboundMessageEvent) with customer_opted_out set when the
    ``conversation`` row (its alias) is opted out."""
    return f"""CAST({payload} AS bytea) || CASE WHEN {conversation}.opted_out_at IS NOT NULL
               THEN decode('{_OPTED_OUT_FLAG.hex()}', 'hex') ELSE decode('', 'hex') END"""


def _with(final: str, **ctes: str) -> str:
    """``WITH name AS (cte), ... final``: one statement of CTEs, run in the order given."""
    parts = ", ".join(f"{name} AS ({body}\n    )" for name, body in ctes.items())
    return f"WITH {parts}\n    {final}"


_ARRAY_OF: dict[type, str] = {str: "text[]", bytes: "bytea[]", datetime: "timestamptz[]"}


def _unnest(row_type: type[InboundRow]) -> str:
    """A table of one row per index of the arrays bound under ``row_type``'s field names,
    with those names as columns, and ``position``: the index (from 1), to keep the order."""
    types = get_type_hints(row_type)
    arrays = ",\n            ".join(
        f"CAST(:{name} AS {_ARRAY_OF[types[name]]})" for name in row_type._fields
    )
    columns = ", ".join(row_type._fields)
    return f"""unnest(
            {arrays}
        ) WITH ORDINALITY AS t({columns}, position)"""


_RECORD_INBOUND = sa.text(
    _with(
        "SELECT * FROM conversation",
        new_message=_insert_messages(
            """VALUES (:message_id, :tenant_id, :conversation_id, :direction, :status, :body,
                :content, :provider_sid, 0, '', :history, :received_at, :recorded_at)""",
            key="provider_sid",
            returning="created_at",
        ),
        conversation=_upsert_conversations(
            """SELECT :conversation_id, :tenant_id, :sender_number, :customer_number,
               :profile_name, created_at, created_at, created_at + interval '24 hours', 1, now()
        FROM new_message""",
            update=_inbound_arrived(
                unread="""CASE
                WHEN c.read_through IS NULL OR excluded.last_inbound_at > c.read_through
                THEN 1 ELSE 0 END"""
            ),
            returning="c.*",
        ),
        # Fed by the upsert, so its id is taken under the conversation's row lock: events of
        # one conversation get ids in commit order, which the relay publishes in.
        # The upsert leaves opted_out_at as it was: the flag is the state before this message.
        event=_insert_events(
            f"""SELECT :stream, :message_type, {_flagged(":payload", "conversation")},
               :traceparent, :tracestate, now()
        FROM conversation"""
        ),
    )
)

# RecordInbound for many messages: the same parts over unnest()ed arrays. Messages are
# inserted in SID order and conversations upserted in id order, so two batches lock rows in
# the same order and cannot deadlock; events keep the batch's order.
_RECORD_INBOUND_BATCH = sa.text(
    _with(
        "SELECT id FROM new_message",
        input=f"""
        SELECT * FROM {_unnest(InboundRow)}""",
        new_message=_insert_messages(
            """SELECT message_id, tenant_id, conversation_id, :direction, :status, body, content,
               provider_sid, 0, '', history, received_at, :recorded_at
        FROM input ORDER BY provider_sid""",
            key="provider_sid",
            returning="id, conversation_id, created_at",
        ),
        arrivals="""
        SELECT i.conversation_id, min(i.tenant_id) AS tenant_id,
               min(i.sender_number) AS sender_number, min(i.customer_number) AS customer_number,
               coalesce((array_agg(i.profile_name ORDER BY i.position DESC)
                         FILTER (WHERE i.profile_name <> ''))[1], '') AS profile_name,
               max(n.created_at) AS last_at, count(*) AS arrived
        FROM new_message n JOIN input i ON i.message_id = n.id
        GROUP BY i.conversation_id""",
        conversation=_upsert_conversations(
            """SELECT conversation_id, tenant_id, sender_number, customer_number, profile_name,
               last_at, last_at, last_at + interval '24 hours', arrived, now()
        FROM arrivals ORDER BY conversation_id""",
            update=_inbound_arrived(
                unread="""
                SELECT count(*) FROM new_message n
                WHERE n.conversation_id = c.id
                  AND (c.read_through IS NULL OR n.created_at > c.read_through)"""
            ),
            returning="c.id, c.opted_out_at",
        ),
        event=_insert_events(
            f"""SELECT :stream, :message_type, {_flagged("i.payload", "c")},
               i.traceparent, i.tracestate, now()
        FROM input i
        JOIN new_message n ON n.id = i.message_id
        JOIN conversation c ON c.id = i.conversation_id
        ORDER BY i.position"""
        ),
    )
)

_RECORD_OUTBOUND = sa.text(
    _with(
        "SELECT * FROM new_message",
        # Refused: the customer opted out, and the caller did not say to send despite it.
        refusal="""
        SELECT EXISTS (SELECT FROM conversations
                       WHERE id = :conversation_id AND opted_out_at IS NOT NULL)
               AND NOT CAST(:despite_opt_out AS boolean) AS refused""",
        new_message=_insert_messages(
            f"""SELECT :message_id, :tenant_id, :conversation_id, :direction,
               CASE WHEN refused THEN {pb.MESSAGE_STATUS_FAILED}
                    ELSE CAST(:status AS smallint) END,
               :body, :content, :idempotency_key,
               CASE WHEN refused THEN {OPTED_OUT_CODE} ELSE 0 END,
               CASE WHEN refused THEN CAST(:refusal_message AS text) ELSE '' END,
               CASE WHEN refused THEN CAST(:refused_history AS bytea)
                    ELSE CAST(:history AS bytea) END,
               now(), now()
        FROM refusal""",
            key="idempotency_key",
            returning="*",
        ),
        # An outbound message opens no 24-hour window and is never unread.
        conversation=_upsert_conversations(
            """SELECT :conversation_id, :tenant_id, :sender_number, :customer_number, '',
               created_at, NULL, NULL, 0, now()
        FROM new_message""",
            update=_OUTBOUND_SENT,
        ),
    )
)


# SetOptOut: the conversation is created (with no message) if there is none, and changed only
# if its state differs, so a row comes back only when this call created or changed it.
_SET_OPT_OUT = sa.text(
    """
    INSERT INTO conversations AS c (id, tenant_id, sender_number, customer_number, profile_name,
                                    last_message_at, unread_count, created_at, opted_out_at)
    VALUES (:conversation_id, :tenant_id, :sender_number, :customer_number, '', now(), 0, now(),
            CASE WHEN CAST(:opted_out AS boolean) THEN now() END)
    ON CONFLICT (tenant_id, sender_number, customer_number) DO UPDATE
        SET opted_out_at = excluded.opted_out_at
        WHERE (c.opted_out_at IS NULL) <> (excluded.opted_out_at IS NULL)
    RETURNING c.*, (c.xmax = 0) AS created"""
)  # xmax is 0 only on a row version no update wrote: here, the inserted one


class ConversationStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single_statements = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def record_inbound(
        self,
        request: pb.RecordInboundRequest,
        participants: Participants,
        received_at: datetime,
    ) -> pb.RecordInboundResponse:
        recorded_at = datetime.now(UTC)
        row = _inbound_row(request, participants, received_at, recorded_at, _current_trace())
        parameters = {**row._asdict(), **_INBOUND_FIXED, "recorded_at": recorded_at}
        async with self._autocommit() as connection:
            stored = (await connection.execute(_RECORD_INBOUND, parameters)).mappings().first()
            if stored is None:
                return await self._original_inbound(connection, row.tenant_id, row.provider_sid)
        message = message_from(
            row.content + row.history,
            id=row.message_id,
            tenant_id=row.tenant_id,
            conversation_id=row.conversation_id,
            direction=_INBOUND,
            status=pb.MESSAGE_STATUS_RECEIVED,
            body=row.body,
            provider_sid=row.provider_sid,
            created_at=received_at,
            updated_at=recorded_at,
        )
        return pb.RecordInboundResponse(message=message, conversation=conversation_of(stored))

    async def record_inbound_batch(self, items: Sequence[InboundItem]) -> list[BatchOutcome]:
        """RecordInbound for each item, in one statement; one outcome per item, in order.

        ``items`` must carry distinct MessageSids (the servicer folds repeats together).
        """
        recorded_at = datetime.now(UTC)
        trace = _current_trace()  # the batch's call: every event of it continues that trace
        rows = [
            _inbound_row(item.request, item.participants, item.received_at, recorded_at, trace)
            for item in items
        ]
        parameters = {**_arrays(rows), **_INBOUND_FIXED, "recorded_at": recorded_at}
        async with self._autocommit() as connection:
            inserted = set((await connection.execute(_RECORD_INBOUND_BATCH, parameters)).scalars())
            repeated = [row.provider_sid for row in rows if row.message_id not in inserted]
            originals = await _originals(connection, repeated)
        return [_batch_outcome(row, inserted, originals) for row in rows]

    async def _original_inbound(
        self, connection: AsyncConnection, tenant_id: str, message_sid: str
    ) -> pb.RecordInboundResponse:
        row = await _one_message(connection, messages.c.provider_sid == message_sid)
        if row is None or row["tenant_id"] != tenant_id:
            raise _stored_for_another_tenant()
        conversation = await _conversation_row(connection, tenant_id, row["conversation_id"])
        return pb.RecordInboundResponse(
            message=message_of(row), conversation=conversation_of(conversation), duplicate=True
        )

    async def record_outbound(
        self, request: pb.RecordOutboundRequest, participants: Participants
    ) -> pb.RecordOutboundResponse:
        now = datetime.now(UTC)
        parameters = {
            "message_id": str(uuid.uuid4()),
            "tenant_id": request.tenant_id,
            "conversation_id": conversation_id_for(request.tenant_id, participants),
            "direction": _OUTBOUND,
            "status": pb.MESSAGE_STATUS_PENDING,
            "body": request.body,
            "content": outbound_content(request),
            "idempotency_key": request.idempotency_key,
            "history": _history([StatusChange(pb.MESSAGE_STATUS_PENDING, now)]),
            "refused_history": _history(
                [
                    StatusChange(pb.MESSAGE_STATUS_PENDING, now),
                    StatusChange(pb.MESSAGE_STATUS_FAILED, now, OPTED_OUT_CODE, OPTED_OUT_MESSAGE),
                ]
            ),
            "refusal_message": OPTED_OUT_MESSAGE,
            "despite_opt_out": request.despite_opt_out,
            "sender_number": participants.sender_number,
            "customer_number": participants.customer_number,
        }
        async with self._autocommit() as connection:
            row = (await connection.execute(_RECORD_OUTBOUND, parameters)).mappings().first()
            if row is not None:
                return pb.RecordOutboundResponse(
                    message=message_of(row), recipient_opted_out=_refused_for_opt_out(row)
                )
            original = await _one_message(
                connection,
                messages.c.tenant_id == request.tenant_id,
                messages.c.idempotency_key == request.idempotency_key,
            )
        if original is None:  # only if deleted in between, which nothing does
            raise FailedPrecondition("the message vanished; retry", field="idempotency_key")
        return pb.RecordOutboundResponse(
            message=message_of(original),
            duplicate=True,
            recipient_opted_out=_refused_for_opt_out(original),
        )

    async def set_opt_out(
        self, tenant_id: str, participants: Participants, opted_out: bool
    ) -> tuple[pb.Conversation, bool]:
        """Opt the conversation's customer out (or back in), creating the conversation if
        there is none; True if its state changed (a new conversation starts opted in)."""
        conversation_id = conversation_id_for(tenant_id, participants)
        parameters = {
            "conversation_id": conversation_id,
            "tenant_id": tenant_id,
            "sender_number": participants.sender_number,
            "customer_number": participants.customer_number,
            "opted_out": opted_out,
        }
        async with self._autocommit() as connection:
            row = (await connection.execute(_SET_OPT_OUT, parameters)).mappings().first()
            if row is None:  # already in that state
                stored = await _conversation_row(connection, tenant_id, conversation_id)
                return conversation_of(stored), False
        return conversation_of(row), opted_out or not row["created"]

    async def update_outbound(
        self,
        tenant_id: str,
        idempotency_key: str,
        provider_sid: str,
        change: StatusChange | None,
    ) -> pb.Message:
        async with self._engine.begin() as connection:
            row = await _one_message(
                connection,
                messages.c.tenant_id == tenant_id,
                messages.c.idempotency_key == idempotency_key,
                for_update=True,
            )
            if row is None:
                raise NotFound(
                    f"tenant {tenant_id} has no outbound message with this key",
                    field="idempotency_key",
                )
            changes = [change] if change is not None else []
            if provider_sid:
                if row["provider_sid"] not in (None, provider_sid):
                    raise FailedPrecondition(
                        f"the message already has SID {row['provider_sid']}",
                        field="provider_sid",
                    )
                await _lock_sid(connection, provider_sid)
                changes += await _take_pending(connection, tenant_id, provider_sid)
            try:
                return await _apply(connection, row, changes, provider_sid=provider_sid)
            except IntegrityError:
                raise AlreadyExists(
                    "another message already has this SID", field="provider_sid"
                ) from None

    async def record_status(
        self, tenant_id: str, provider_sid: str, change: StatusChange
    ) -> pb.RecordStatusResponse:
        async with self._engine.begin() as connection:
            # Serialises with UpdateOutbound attaching this SID, so a callback cannot be
            # kept aside after the message claimed its pending statuses.
            await _lock_sid(connection, provider_sid)
            row = await _one_message(
                connection, messages.c.provider_sid == provider_sid, for_update=True
            )
            if row is None or row["tenant_id"] != tenant_id:
                await connection.execute(
                    insert(pending_statuses)
                    .values(
                        tenant_id=tenant_id,
                        provider_sid=provider_sid,
                        status=change.status,
                        error_code=change.error_code,
                        error_message=change.error_message,
                        occurred_at=change.occurred_at,
                        created_at=sa.func.now(),
                    )
                    .on_conflict_do_nothing()
                )
                return pb.RecordStatusResponse(outcome=pb.RECORD_STATUS_OUTCOME_DEFERRED)
            if not statuses.advances(row["status"], change.status):
                return pb.RecordStatusResponse(
                    outcome=pb.RECORD_STATUS_OUTCOME_STALE, message=message_of(row)
                )
            message = await _apply(connection, row, [change])
            return pb.RecordStatusResponse(
                outcome=pb.RECORD_STATUS_OUTCOME_APPLIED, message=message
            )

    async def get_conversation(self, tenant_id: str, key: str | Participants) -> pb.Conversation:
        """The conversation ``key`` names: its id, or its participants."""
        conversation_id = key if isinstance(key, str) else conversation_id_for(tenant_id, key)
        async with self._engine.connect() as connection:
            row = await _conversation_row(connection, tenant_id, conversation_id)
        return conversation_of(row)

    async def list_conversations(
        self,
        tenant_id: str,
        *,
        after: tuple[datetime, str] | None,
        limit: int,
        unread_only: bool,
        sender_number: str,
    ) -> list[pb.Conversation]:
        c = conversations.c
        query = sa.select(conversations).where(c.tenant_id == tenant_id)
        if unread_only:
            query = query.where(c.unread_count > 0)
        if sender_number:
            query = query.where(c.sender_number == sender_number)
        if after is not None:
            query = query.where(sa.tuple_(c.last_message_at, c.id) < _position(after))
        query = query.order_by(c.last_message_at.desc(), c.id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [conversation_of(row) for row in rows]

    async def list_messages(
        self,
        tenant_id: str,
        conversation_id: str,
        *,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[pb.Message]:
        m = messages.c
        query = sa.select(messages).where(m.conversation_id == conversation_id)
        if after is not None:
            query = query.where(sa.tuple_(m.created_at, m.id) < _position(after))
        query = query.order_by(m.created_at.desc(), m.id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            await _conversation_row(connection, tenant_id, conversation_id)
            rows = (await connection.execute(query)).mappings().all()
        return [message_of(row) for row in rows]

    async def mark_read(
        self, tenant_id: str, conversation_id: str, read_through: datetime | None
    ) -> pb.Conversation:
        c = conversations.c
        through = sa.func.greatest(
            sa.func.coalesce(c.read_through, sa.literal_column("'-infinity'::timestamptz")),
            read_through if read_through is not None else sa.func.now(),
        )
        unread = (
            sa.select(sa.func.count())
            .select_from(messages)
            .where(
                messages.c.conversation_id == c.id,
                messages.c.direction == _INBOUND,
                messages.c.created_at > through,
            )
            .scalar_subquery()
        )
        async with self._engine.begin() as connection:
            row = (
                (
                    await connection.execute(
                        sa.update(conversations)
                        .where(c.tenant_id == tenant_id, c.id == conversation_id)
                        .values(read_through=through, unread_count=unread)
                        .returning(conversations)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(
                f"tenant {tenant_id} has no conversation {conversation_id}",
                field="conversation_id",
            )
        return conversation_of(row)

    def _autocommit(self) -> AsyncConnection:
        """A connection whose single statements commit on their own (no BEGIN/COMMIT trips)."""
        return self._single_statements.connect()


def _refused_for_opt_out(row: sa.RowMapping) -> bool:
    """The outbound message was failed for the customer's opt-out, before it was sent."""
    return (
        row["status"] == pb.MESSAGE_STATUS_FAILED
        and row["error_code"] == OPTED_OUT_CODE
        and row["provider_sid"] is None
    )


def _position(after: tuple[datetime, str]) -> Any:
    moment, row_id = after
    return sa.tuple_(sa.literal(moment, sa.DateTime(timezone=True)), sa.literal(row_id))


async def _lock_sid(connection: AsyncConnection, provider_sid: str) -> None:
    await connection.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(provider_sid)))
    )


async def _take_pending(
    connection: AsyncConnection, tenant_id: str, provider_sid: str
) -> list[StatusChange]:
    rows = await connection.execute(
        sa.delete(pending_statuses)
        .where(
            pending_statuses.c.tenant_id == tenant_id,
            pending_statuses.c.provider_sid == provider_sid,
        )
        .returning(pending_statuses)
    )
    return [
        StatusChange(row["status"], row["occurred_at"], row["error_code"], row["error_message"])
        for row in rows.mappings()
    ]


async def _apply(
    connection: AsyncConnection,
    row: sa.RowMapping,
    changes: Sequence[StatusChange],
    *,
    provider_sid: str = "",
) -> pb.Message:
    """Apply the changes that move the message forward; publish a failure if one lands."""
    status, error_code, error_message = row["status"], row["error_code"], row["error_message"]
    applied: list[StatusChange] = []
    for change in sorted(changes, key=lambda c: statuses.order_key(c.status)):
        if statuses.advances(status, change.status):
            status = change.status
            if change.status in statuses.FINAL:
                error_code, error_message = change.error_code, change.error_message
            applied.append(change)
    values: dict[str, Any] = {}
    if provider_sid and row["provider_sid"] is None:
        values["provider_sid"] = provider_sid
    if applied:
        values |= {
            "status": status,
            "error_code": error_code,
            "error_message": error_message,
            "status_history": messages.c.status_history.op("||")(_history(applied)),
        }
    if not values:
        return message_of(row)
    updated = (
        (
            await connection.execute(
                sa.update(messages)
                .where(messages.c.id == row["id"])
                .values(updated_at=sa.func.now(), **values)
                .returning(messages)
            )
        )
        .mappings()
        .one()
    )
    message = message_of(updated)
    if status in statuses.FAILURES and row["status"] != status and message.provider_sid:
        await _publish_failure(connection, message)
    return message


async def _publish_failure(connection: AsyncConnection, message: pb.Message) -> None:
    event = events_pb2.MessageStatusEvent(
        tenant_id=message.tenant_id,
        conversation_id=message.conversation_id,
        message_id=message.id,
        provider_sid=message.provider_sid,
        idempotency_key=message.idempotency_key,
        status=message.status,
        error_code=message.error_code,
        error_message=message.error_message,
        occurred_at=message.status_history[-1].occurred_at,
    )
    await connection.execute(
        sa.insert(outbox).values(
            stream=STATUSES_STREAM, created_at=sa.func.now(), **_outbox_values(event)
        )
    )


def _outbox_values(event: ProtoMessage) -> dict[str, Any]:
    fields = encode_entry(event)
    return {
        "message_type": fields[FIELD_TYPE].decode(),
        "payload": fields[FIELD_PAYLOAD],
        "traceparent": fields.get(b"traceparent", b"").decode(),
        "tracestate": fields.get(b"tracestate", b"").decode(),
    }


async def _one_message(
    connection: AsyncConnection, *where: Any, for_update: bool = False
) -> sa.RowMapping | None:
    query = sa.select(messages).where(*where)
    if for_update:
        query = query.with_for_update()
    return (await connection.execute(query)).mappings().first()


async def _conversation_row(
    connection: AsyncConnection, tenant_id: str, conversation_id: str
) -> sa.RowMapping:
    row = (
        (
            await connection.execute(
                sa.select(conversations).where(
                    conversations.c.id == conversation_id,
                    conversations.c.tenant_id == tenant_id,
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(
            f"tenant {tenant_id} has no conversation {conversation_id}", field="conversation_id"
        )
    return row


def _current_trace() -> tuple[str, str]:
    """The W3C traceparent and tracestate of the current span (empty outside one)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", ""), carrier.get("tracestate", "")


def _inbound_row(
    request: pb.RecordInboundRequest,
    participants: Participants,
    received_at: datetime,
    recorded_at: datetime,
    trace: tuple[str, str],
) -> InboundRow:
    """What the RecordInbound statements store of one inbound message: a new message id,
    its conversation's, its columns and its event."""
    inbound, tenant_id = request.message, request.tenant_id
    conversation_id = conversation_id_for(tenant_id, participants)
    message_id = str(uuid.uuid4())
    event = _inbound_event(
        request, participants, message_id, conversation_id, received_at, recorded_at
    )
    return InboundRow(
        message_id=message_id,
        tenant_id=tenant_id,
        conversation_id=conversation_id,
        body=inbound.body,
        content=inbound_content(inbound, request.rate_limited),
        provider_sid=inbound.message_sid,
        history=_history([StatusChange(pb.MESSAGE_STATUS_RECEIVED, received_at)]),
        received_at=received_at,
        sender_number=participants.sender_number,
        customer_number=participants.customer_number,
        profile_name=inbound.profile_name,
        payload=event.SerializeToString(),
        traceparent=trace[0],
        tracestate=trace[1],
    )


def _inbound_event(
    request: pb.RecordInboundRequest,
    participants: Participants,
    message_id: str,
    conversation_id: str,
    received_at: datetime,
    recorded_at: datetime,
) -> events_pb2.InboundMessageEvent:
    return events_pb2.InboundMessageEvent(
        tenant_id=request.tenant_id,
        conversation_id=conversation_id,
        message_id=message_id,
        customer_number=participants.customer_number,
        sender_number=participants.sender_number,
        content=request.message,
        rate_limited=request.rate_limited,
        received_at=timestamp(received_at),
        recorded_at=timestamp(recorded_at),
    )


def _arrays(rows: Sequence[InboundRow]) -> dict[str, list[Any]]:
    """The batch statement's arrays: per field of InboundRow, its values in row order."""
    # zip(*rows) turns the rows into columns in one pass, in C.
    columns = zip(*rows, strict=True) if rows else ((),) * len(InboundRow._fields)
    return {name: list(column) for name, column in zip(InboundRow._fields, columns, strict=True)}


def _batch_outcome(
    row: InboundRow, inserted: Collection[str], originals: Mapping[str, tuple[str, str, str]]
) -> BatchOutcome:
    if row.message_id in inserted:
        return BatchOutcome(row.message_id, row.conversation_id, duplicate=False)
    original = originals.get(row.provider_sid)
    if original is None or original[0] != row.tenant_id:
        return BatchOutcome("", "", duplicate=False, refusal=_stored_for_another_tenant())
    return BatchOutcome(original[1], original[2], duplicate=True)


def _stored_for_another_tenant() -> AlreadyExists:
    # Twilio SIDs are unique across accounts: this one is stored under another tenant.
    return AlreadyExists(
        "this MessageSid is already stored for another tenant", field="message.message_sid"
    )


_TEXT_ARRAY = ARRAY(sa.Text())  # = ANY(array): one prepared statement whatever the count


async def _originals(
    connection: AsyncConnection, message_sids: Sequence[str]
) -> dict[str, tuple[str, str, str]]:
    """MessageSid → (tenant id, message id, conversation id) of stored messages."""
    if not message_sids:
        return {}
    rows = await connection.execute(
        sa.select(
            messages.c.provider_sid,
            messages.c.tenant_id,
            messages.c.id,
            messages.c.conversation_id,
        ).where(messages.c.provider_sid == sa.any_(sa.literal(list(message_sids), _TEXT_ARRAY)))
    )
    return {sid: (tenant, message, conversation) for sid, tenant, message, conversation in rows}


def _history(changes: Sequence[StatusChange]) -> bytes:
    return pb.Message(
        status_history=[
            pb.StatusChange(
                status=change.status,
                occurred_at=timestamp(change.occurred_at),
                error_code=change.error_code,
                error_message=change.error_message,
            )
            for change in changes
        ]
    ).SerializeToString()
