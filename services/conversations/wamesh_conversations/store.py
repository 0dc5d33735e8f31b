"""Postgres, the conversation store: every write is atomic with the events it causes.

RecordInbound is the hot path (every webhook waits on it), so it is one statement: the
message insert (a repeated MessageSid inserts nothing), the conversation upsert and the
outbox row are CTEs fed by that insert, so a duplicate touches nothing and a new message
is never stored without its event, or the reverse. One statement in autocommit is one
round trip and its own transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import propagate
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.events.v1 import events_pb2
from wamesh_conversations import statuses
from wamesh_conversations.schema import conversations, messages, outbox, pending_statuses
from wamesh_conversations.validation import Participants
from wamesh_kit.errors import AlreadyExists, FailedPrecondition, NotFound
from wamesh_kit.keys import stream_key
from wamesh_kit.streams import FIELD_PAYLOAD, FIELD_TYPE, encode_entry

INBOUND_STREAM = stream_key("inbound")
STATUSES_STREAM = stream_key("statuses")
_CONVERSATION_IDS = uuid.UUID("6c1e3f0e-2f57-4c43-9a35-0c7f2b8f9d10")
_INBOUND, _OUTBOUND = pb.DIRECTION_INBOUND, pb.DIRECTION_OUTBOUND


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


_OTHER_TENANT = AlreadyExists(
    "this MessageSid is already stored for another tenant", field="message.message_sid"
)
_BATCH_COLUMNS = (
    "message_ids", "tenant_ids", "conversation_ids", "bodies", "contents", "sids", "histories",
    "received", "senders", "customers", "profile_names", "payloads", "traceparents",
    "tracestates",
)  # fmt: skip


_RECORD_INBOUND = sa.text(
    """
    WITH new_message AS (
        INSERT INTO messages (id, tenant_id, conversation_id, direction, status, body, content,
                              provider_sid, error_code, error_message, status_history,
                              created_at, updated_at)
        VALUES (:message_id, :tenant_id, :conversation_id, :direction, :status, :body,
                :content, :provider_sid, 0, '', :history, :received_at, :recorded_at)
        ON CONFLICT (provider_sid) DO NOTHING
        RETURNING created_at
    ), conversation AS (
        INSERT INTO conversations AS c (id, tenant_id, sender_number, customer_number,
                                        profile_name, last_message_at, last_inbound_at,
                                        window_open_until, unread_count, created_at)
        SELECT :conversation_id, :tenant_id, :sender_number, :customer_number, :profile_name,
               created_at, created_at, created_at + interval '24 hours', 1, now()
        FROM new_message
        ON CONFLICT (tenant_id, sender_number, customer_number) DO UPDATE SET
            profile_name = CASE WHEN excluded.profile_name <> '' THEN excluded.profile_name
                                ELSE c.profile_name END,
            last_message_at = GREATEST(c.last_message_at, excluded.last_message_at),
            last_inbound_at = GREATEST(c.last_inbound_at, excluded.last_inbound_at),
            window_open_until = GREATEST(c.window_open_until, excluded.window_open_until),
            unread_count = c.unread_count + CASE
                WHEN c.read_through IS NULL OR excluded.last_inbound_at > c.read_through
                THEN 1 ELSE 0 END
        RETURNING c.*
    ), event AS (
        -- Fed by the upsert, so its id is taken under the conversation's row lock: events
        -- of one conversation get ids in commit order, which the relay publishes in.
        INSERT INTO outbox (stream, message_type, payload, traceparent, tracestate, created_at)
        SELECT :stream, :message_type, :payload, :traceparent, :tracestate, now()
        FROM conversation
    )
    SELECT * FROM conversation
    """
)

# RecordInbound for many messages: the same CTEs over unnest()ed arrays. Messages are
# inserted in SID order and conversations upserted in id order, so two batches lock rows in
# the same order and cannot deadlock; events keep the batch's order.
_RECORD_INBOUND_BATCH = sa.text(
    """
    WITH input AS (
        SELECT * FROM unnest(
            CAST(:message_ids AS text[]), CAST(:tenant_ids AS text[]),
            CAST(:conversation_ids AS text[]), CAST(:bodies AS text[]),
            CAST(:contents AS bytea[]), CAST(:sids AS text[]), CAST(:histories AS bytea[]),
            CAST(:received AS timestamptz[]), CAST(:senders AS text[]),
            CAST(:customers AS text[]), CAST(:profile_names AS text[]),
            CAST(:payloads AS bytea[]), CAST(:traceparents AS text[]),
            CAST(:tracestates AS text[])
        ) WITH ORDINALITY AS t(message_id, tenant_id, conversation_id, body, content,
                               provider_sid, history, received_at, sender_number,
                               customer_number, profile_name, payload, traceparent,
                               tracestate, position)
    ), new_message AS (
        INSERT INTO messages (id, tenant_id, conversation_id, direction, status, body, content,
                              provider_sid, error_code, error_message, status_history,
                              created_at, updated_at)
        SELECT message_id, tenant_id, conversation_id, :direction, :status, body, content,
               provider_sid, 0, '', history, received_at, :recorded_at
        FROM input ORDER BY provider_sid
        ON CONFLICT (provider_sid) DO NOTHING
        RETURNING id, conversation_id, created_at
    ), arrivals AS (
        SELECT i.conversation_id, min(i.tenant_id) AS tenant_id,
               min(i.sender_number) AS sender_number, min(i.customer_number) AS customer_number,
               coalesce((array_agg(i.profile_name ORDER BY i.position DESC)
                         FILTER (WHERE i.profile_name <> ''))[1], '') AS profile_name,
               max(n.created_at) AS last_at, count(*) AS arrived
        FROM new_message n JOIN input i ON i.message_id = n.id
        GROUP BY i.conversation_id
    ), conversation AS (
        INSERT INTO conversations AS c (id, tenant_id, sender_number, customer_number,
                                        profile_name, last_message_at, last_inbound_at,
                                        window_open_until, unread_count, created_at)
        SELECT conversation_id, tenant_id, sender_number, customer_number, profile_name,
               last_at, last_at, last_at + interval '24 hours', arrived, now()
        FROM arrivals ORDER BY conversation_id
        ON CONFLICT (tenant_id, sender_number, customer_number) DO UPDATE SET
            profile_name = CASE WHEN excluded.profile_name <> '' THEN excluded.profile_name
                                ELSE c.profile_name END,
            last_message_at = GREATEST(c.last_message_at, excluded.last_message_at),
            last_inbound_at = GREATEST(c.last_inbound_at, excluded.last_inbound_at),
            window_open_until = GREATEST(c.window_open_until, excluded.window_open_until),
            unread_count = c.unread_count + (
                SELECT count(*) FROM new_message n
                WHERE n.conversation_id = c.id
                  AND (c.read_through IS NULL OR n.created_at > c.read_through))
        RETURNING c.id
    ), event AS (
        INSERT INTO outbox (stream, message_type, payload, traceparent, tracestate, created_at)
        SELECT :stream, :message_type, i.payload, i.traceparent, i.tracestate, now()
        FROM input i
        JOIN new_message n ON n.id = i.message_id
        JOIN conversation c ON c.id = i.conversation_id
        ORDER BY i.position
    )
    SELECT id FROM new_message
    """
)

_RECORD_OUTBOUND = sa.text(
    """
    WITH new_message AS (
        INSERT INTO messages (id, tenant_id, conversation_id, direction, status, body, content,
                              idempotency_key, error_code, error_message, status_history,
                              created_at, updated_at)
        VALUES (:message_id, :tenant_id, :conversation_id, :direction, :status, :body,
                :content, :idempotency_key, 0, '', :history, now(), now())
        ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
        RETURNING *
    ), conversation AS (
        INSERT INTO conversations AS c (id, tenant_id, sender_number, customer_number,
                                        profile_name, last_message_at, unread_count, created_at)
        SELECT :conversation_id, :tenant_id, :sender_number, :customer_number, '',
               created_at, 0, now()
        FROM new_message
        ON CONFLICT (tenant_id, sender_number, customer_number) DO UPDATE SET
            last_message_at = GREATEST(c.last_message_at, excluded.last_message_at)
    )
    SELECT * FROM new_message
    """
)


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
        inbound = request.message
        tenant_id = request.tenant_id
        conversation_id = conversation_id_for(tenant_id, participants)
        message_id = str(uuid.uuid4())
        recorded_at = datetime.now(UTC)
        event = events_pb2.InboundMessageEvent(
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            message_id=message_id,
            customer_number=participants.customer_number,
            sender_number=participants.sender_number,
            content=inbound,
            rate_limited=request.rate_limited,
            received_at=timestamp(received_at),
            recorded_at=timestamp(recorded_at),
        )
        content = _inbound_content(inbound, request.rate_limited)
        history = _history([StatusChange(pb.MESSAGE_STATUS_RECEIVED, received_at)])
        async with self._autocommit() as connection:
            row = (
                (
                    await connection.execute(
                        _RECORD_INBOUND,
                        {
                            "message_id": message_id,
                            "tenant_id": tenant_id,
                            "conversation_id": conversation_id,
                            "direction": _INBOUND,
                            "status": pb.MESSAGE_STATUS_RECEIVED,
                            "body": inbound.body,
                            "content": content,
                            "provider_sid": inbound.message_sid,
                            "history": history,
                            "received_at": received_at,
                            "recorded_at": recorded_at,
                            "sender_number": participants.sender_number,
                            "customer_number": participants.customer_number,
                            "profile_name": inbound.profile_name,
                            "stream": INBOUND_STREAM,
                            **_outbox_values(event),
                        },
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return await self._original_inbound(connection, tenant_id, inbound.message_sid)
        message = _message_from(
            content + history,
            id=message_id,
            tenant_id=tenant_id,
            conversation_id=conversation_id,
            direction=_INBOUND,
            status=pb.MESSAGE_STATUS_RECEIVED,
            body=inbound.body,
            provider_sid=inbound.message_sid,
            created_at=received_at,
            updated_at=recorded_at,
        )
        return pb.RecordInboundResponse(message=message, conversation=_conversation(row))

    async def record_inbound_batch(self, items: Sequence[InboundItem]) -> list[BatchOutcome]:
        """RecordInbound for each item, in one statement; one outcome per item, in order.

        ``items`` must carry distinct MessageSids (the servicer folds repeats together).
        """
        recorded_at = datetime.now(UTC)
        trace = _current_trace()  # the batch's call: every event of it continues that trace
        columns: dict[str, list[Any]] = {name: [] for name in _BATCH_COLUMNS}
        for item in items:
            for name, value in _batch_row(item, recorded_at, trace).items():
                columns[name].append(value)
        parameters: dict[str, Any] = {
            **columns,
            "direction": _INBOUND,
            "status": pb.MESSAGE_STATUS_RECEIVED,
            "recorded_at": recorded_at,
            "stream": INBOUND_STREAM,
            "message_type": events_pb2.InboundMessageEvent.DESCRIPTOR.full_name,
        }
        async with self._autocommit() as connection:
            inserted = set((await connection.execute(_RECORD_INBOUND_BATCH, parameters)).scalars())
            repeated = [
                item.request.message.message_sid
                for item, message_id in zip(items, columns["message_ids"], strict=True)
                if message_id not in inserted
            ]
            originals = await _originals(connection, repeated)
        outcomes = []
        for item, message_id, conversation_id in zip(
            items, columns["message_ids"], columns["conversation_ids"], strict=True
        ):
            if message_id in inserted:
                outcomes.append(BatchOutcome(message_id, conversation_id, duplicate=False))
                continue
            original = originals.get(item.request.message.message_sid)
            if original is None or original[0] != item.request.tenant_id:
                outcomes.append(BatchOutcome("", "", duplicate=False, refusal=_OTHER_TENANT))
            else:
                outcomes.append(BatchOutcome(original[1], original[2], duplicate=True))
        return outcomes

    async def _original_inbound(
        self, connection: AsyncConnection, tenant_id: str, message_sid: str
    ) -> pb.RecordInboundResponse:
        row = await _one_message(connection, messages.c.provider_sid == message_sid)
        if row is None or row["tenant_id"] != tenant_id:
            # Twilio SIDs are unique across accounts: this one is stored under another tenant.
            raise AlreadyExists(
                "this MessageSid is already stored for another tenant",
                field="message.message_sid",
            )
        conversation = await _conversation_row(connection, tenant_id, row["conversation_id"])
        return pb.RecordInboundResponse(
            message=message_of(row), conversation=_conversation(conversation), duplicate=True
        )

    async def record_outbound(
        self, request: pb.RecordOutboundRequest, participants: Participants
    ) -> pb.RecordOutboundResponse:
        content = pb.Message(
            media=request.media, replied_to_sid=request.replied_to_sid
        ).SerializeToString()
        if request.HasField("template"):
            content += pb.Message(template=request.template).SerializeToString()
        now = datetime.now(UTC)
        async with self._autocommit() as connection:
            row = (
                (
                    await connection.execute(
                        _RECORD_OUTBOUND,
                        {
                            "message_id": str(uuid.uuid4()),
                            "tenant_id": request.tenant_id,
                            "conversation_id": conversation_id_for(request.tenant_id, participants),
                            "direction": _OUTBOUND,
                            "status": pb.MESSAGE_STATUS_PENDING,
                            "body": request.body,
                            "content": content,
                            "idempotency_key": request.idempotency_key,
                            "history": _history([StatusChange(pb.MESSAGE_STATUS_PENDING, now)]),
                            "sender_number": participants.sender_number,
                            "customer_number": participants.customer_number,
                        },
                    )
                )
                .mappings()
                .first()
            )
            if row is not None:
                return pb.RecordOutboundResponse(message=message_of(row))
            original = await _one_message(
                connection,
                messages.c.tenant_id == request.tenant_id,
                messages.c.idempotency_key == request.idempotency_key,
            )
        if original is None:  # only if deleted in between, which nothing does
            raise FailedPrecondition("the message vanished; retry", field="idempotency_key")
        return pb.RecordOutboundResponse(message=message_of(original), duplicate=True)

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

    async def get_conversation(
        self, tenant_id: str, conversation_id: str | None, participants: Participants | None
    ) -> pb.Conversation:
        if conversation_id is None:
            assert participants is not None
            conversation_id = conversation_id_for(tenant_id, participants)
        async with self._engine.connect() as connection:
            row = await _conversation_row(connection, tenant_id, conversation_id)
        return _conversation(row)

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
        return [_conversation(row) for row in rows]

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
        return _conversation(row)

    def _autocommit(self) -> AsyncConnection:
        """A connection whose single statements commit on their own (no BEGIN/COMMIT trips)."""
        return self._single_statements.connect()


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


def _batch_row(item: InboundItem, recorded_at: datetime, trace: tuple[str, str]) -> dict[str, Any]:
    inbound, tenant_id = item.request.message, item.request.tenant_id
    conversation_id = conversation_id_for(tenant_id, item.participants)
    message_id = str(uuid.uuid4())
    event = events_pb2.InboundMessageEvent(
        tenant_id=tenant_id,
        conversation_id=conversation_id,
        message_id=message_id,
        customer_number=item.participants.customer_number,
        sender_number=item.participants.sender_number,
        content=inbound,
        rate_limited=item.request.rate_limited,
        received_at=timestamp(item.received_at),
        recorded_at=timestamp(recorded_at),
    )
    return {
        "message_ids": message_id,
        "tenant_ids": tenant_id,
        "conversation_ids": conversation_id,
        "bodies": inbound.body,
        "contents": _inbound_content(inbound, item.request.rate_limited),
        "sids": inbound.message_sid,
        "histories": _history([StatusChange(pb.MESSAGE_STATUS_RECEIVED, item.received_at)]),
        "received": item.received_at,
        "senders": item.participants.sender_number,
        "customers": item.participants.customer_number,
        "profile_names": inbound.profile_name,
        "payloads": event.SerializeToString(),
        "traceparents": trace[0],
        "tracestates": trace[1],
    }


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


def _inbound_content(inbound: pb.InboundMessage, rate_limited: bool) -> bytes:
    content = pb.Message(
        media=inbound.media,
        button_text=inbound.button_text,
        button_payload=inbound.button_payload,
        replied_to_sid=inbound.original_replied_message_sid,
        inbound=pb.InboundDetails(
            account_sid=inbound.account_sid,
            messaging_service_sid=inbound.messaging_service_sid,
            profile_name=inbound.profile_name,
            wa_id=inbound.wa_id,
            message_type=inbound.message_type,
            referral=inbound.referral if inbound.HasField("referral") else None,
            extra_fields=inbound.extra_fields,
            rate_limited=rate_limited,
        ),
    )
    if inbound.HasField("location"):
        content.location.CopyFrom(inbound.location)
    return content.SerializeToString()


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


def message_of(row: sa.RowMapping) -> pb.Message:
    return _message_from(
        bytes(row["content"]) + bytes(row["status_history"]),
        id=row["id"],
        tenant_id=row["tenant_id"],
        conversation_id=row["conversation_id"],
        direction=row["direction"],
        status=row["status"],
        body=row["body"],
        provider_sid=row["provider_sid"] or "",
        idempotency_key=row["idempotency_key"] or "",
        error_code=row["error_code"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _message_from(
    serialized: bytes, *, created_at: datetime, updated_at: datetime, **fields: Any
) -> pb.Message:
    # Content and history are both serialized Messages: parsing their concatenation merges them.
    message = pb.Message.FromString(serialized)
    for name, value in fields.items():
        setattr(message, name, value)
    message.created_at.CopyFrom(timestamp(created_at))
    message.updated_at.CopyFrom(timestamp(updated_at))
    return message


def _conversation(row: sa.RowMapping) -> pb.Conversation:
    conversation = pb.Conversation(
        id=row["id"],
        tenant_id=row["tenant_id"],
        customer_number=row["customer_number"],
        sender_number=row["sender_number"],
        profile_name=row["profile_name"],
        last_message_at=timestamp(row["last_message_at"]),
        unread_count=row["unread_count"],
        created_at=timestamp(row["created_at"]),
    )
    if row["window_open_until"] is not None:
        conversation.window_open_until.CopyFrom(timestamp(row["window_open_until"]))
    return conversation


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(value: datetime) -> Timestamp:
    """``Timestamp.FromDatetime`` by timedelta arithmetic (a naive value is UTC, as there):
    protobuf's goes through ``calendar.timegm``, three times the cost, several times a row."""
    since = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)
