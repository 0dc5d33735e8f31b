"""Redis Streams carrying protobuf events, with trace context, consumer groups and a dead letter.

Why not a queue library: the Python ones (rq, arq, celery, dramatiq) bring their own job
format and broker layout, while wamesh needs plain streams whose entries any service can
read, protobuf payloads, W3C trace context across the hop, and Redis's own consumer-group
recovery (XAUTOCLAIM). That is a small amount of code over redis-py, so it lives here.

An entry has three fields: ``type`` (the protobuf full name), ``payload`` (the serialized
message) and ``traceparent``/``tracestate`` when a trace is active. A consumer:

* reads new entries for its group (XREADGROUP ``>``), hands each to the handler and
  acknowledges the batch in one XACK, so an entry is acknowledged only after it is handled;
  given a ``lane`` (say, the customer) and a ``concurrency``, a batch's lanes are handled
  concurrently, each in stream order;
* reclaims entries another consumer left pending for longer than ``min_idle_ms``
  (XAUTOCLAIM), so a crashed replica loses nothing;
* moves an entry to ``<stream>:dead`` (in the same MULTI as its XACK, so it is never in both
  places or neither) when its payload cannot be parsed, when the handler raises
  :class:`PoisonMessage`, or when it has been delivered ``max_deliveries`` times; a delivery
  whose handler failed because a dependency was away (``Unavailable``, a lost connection)
  does not count, so an outage of any length leaves the entry pending, not dead;
* recreates its group (from the stream's first entry) when Redis lost it, after a FLUSHALL
  or a restart without persistence, rather than dying on ``NOGROUP``.

Delivery is at least once: handlers must be idempotent. A stream's owner trims what every
group has acknowledged with :func:`trim_acknowledged`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError, Message
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from redis.exceptions import ResponseError

from wamesh_kit.background import pause
from wamesh_kit.keys import dead_letter_stream
from wamesh_kit.redis_client import as_text
from wamesh_kit.rpc.errors import is_infrastructure_error

M = TypeVar("M", bound=Message)

log = logging.getLogger(__name__)

FIELD_TYPE = b"type"
FIELD_PAYLOAD = b"payload"
_TRACE_FIELDS = ("traceparent", "tracestate")


class PoisonMessage(Exception):
    """Raised by a handler for an entry that can never succeed: dead-letter it now."""


@dataclass(frozen=True)
class StreamEntry(Generic[M]):
    """One entry handed to a handler."""

    stream: str
    entry_id: str
    message: M
    deliveries: int


Handler = Callable[[StreamEntry[M]], Awaitable[None]]


def encode_entry(message: Message) -> dict[bytes, bytes]:
    """The fields of a stream entry for ``message``, with the current trace context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    fields = {
        FIELD_TYPE: message.DESCRIPTOR.full_name.encode(),
        FIELD_PAYLOAD: message.SerializeToString(),
    }
    for name in _TRACE_FIELDS:
        if name in carrier:
            fields[name.encode()] = carrier[name].encode()
    return fields


def entry_context(fields: Mapping[bytes, bytes]) -> Context:
    """The trace context the entry's producer wrote into it (empty when it wrote none)."""
    carrier = {
        name: as_text(fields[name.encode()]) for name in _TRACE_FIELDS if name.encode() in fields
    }
    return propagate.extract(carrier)


def _messaging_attributes(stream: str) -> dict[str, str]:
    return {"messaging.system": "redis", "messaging.destination.name": stream}


class StreamProducer:
    """Appends protobuf messages to one stream."""

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        *,
        maxlen: int | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._redis = redis
        self.stream = stream
        self._maxlen = maxlen
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def publish(self, message: Message) -> str:
        """XADD ``message``; returns the entry id once Redis has it."""
        with self._tracer.start_as_current_span(
            f"{self.stream} publish",
            kind=SpanKind.PRODUCER,
            attributes=_messaging_attributes(self.stream),
        ) as span:
            fields = encode_entry(message)
            entry_id = as_text(
                await self._redis.xadd(
                    self.stream,
                    fields,  # type: ignore[arg-type]
                    maxlen=self._maxlen,
                    approximate=True,
                )
            )
            span.set_attribute("messaging.message.id", entry_id)
            return entry_id


class StreamConsumer(Generic[M]):
    """One consumer of a consumer group, handling entries of one protobuf type."""

    def __init__(
        self,
        redis: aioredis.Redis,
        stream: str,
        *,
        group: str,
        consumer: str,
        message_type: type[M],
        handler: Handler[M],
        batch_size: int = 64,
        block_ms: int = 1000,
        min_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        lane: Callable[[M], Hashable] | None = None,
        concurrency: int = 1,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        socket_timeout_s = redis.connection_pool.connection_kwargs.get("socket_timeout")
        if socket_timeout_s is not None and block_ms >= socket_timeout_s * 1000:
            # The client would give up on every idle read, call Redis lost, and leave what
            # the server delivered meanwhile pending until it is reclaimed.
            raise ValueError(
                f"block_ms ({block_ms}) must be below the client's socket timeout "
                f"({socket_timeout_s * 1000:g} ms)"
            )
        self._redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.dead_letter_stream = dead_letter_stream(stream)
        self._message_type = message_type
        self._handler = handler
        self._batch_size = batch_size
        self._block_ms = block_ms
        self._min_idle_ms = min_idle_ms
        self._max_deliveries = max_deliveries
        self._lane = lane
        self._concurrency = concurrency
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._group_ready = False

    async def ensure_group(self) -> None:
        """Create the group (and the stream) if missing; it starts at the stream's beginning."""
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    async def run_once(self, *, block: bool = True) -> int:
        """Reclaim what others abandoned, then read and handle one batch; returns entries seen.

        A group Redis no longer has is created again, from the stream's first entry: what
        the stream still holds, or is given again by its producer, is delivered again.
        """
        await self.ensure_group()
        try:
            return await self._consume(block)
        except ResponseError as error:
            if not _group_gone(error):
                raise
        log.warning(
            "stream consumer group vanished; creating it again",
            extra={"stream": self.stream, "group": self.group},
        )
        self._group_ready = False
        await self.ensure_group()
        return 0

    async def _consume(self, block: bool) -> int:
        seen = await self._handle_batch(await self._reclaim())
        response: Any = await self._redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=self._batch_size,
            block=self._block_ms if block else None,
        )
        for _stream, entries in response or []:
            seen += await self._handle_batch(
                [(entry_id, fields, 1) for entry_id, fields in entries]
            )
        return seen

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; a Redis outage is logged and retried, not fatal."""
        while not stop.is_set():
            try:
                await self.run_once()
            except (ConnectionError, OSError, aioredis.ConnectionError, aioredis.TimeoutError):
                log.warning("stream consumer lost Redis; retrying", extra={"stream": self.stream})
                self._group_ready = False
                await pause(stop, 1.0)

    async def _reclaim(self) -> list[tuple[Any, Any, int]]:
        """Entries idle longer than ``min_idle_ms`` (any consumer's), with their delivery counts."""
        response: Any = await self._redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self._min_idle_ms,
            start_id="0-0",
            count=self._batch_size,
        )
        claimed = [(entry_id, fields) for entry_id, fields in response[1]]
        if not claimed:
            return []
        pending: Any = await self._redis.xpending_range(
            self.stream,
            self.group,
            min=claimed[0][0],
            max=claimed[-1][0],
            count=len(claimed),
            consumername=self.consumer,
        )
        deliveries = {as_text(row["message_id"]): int(row["times_delivered"]) for row in pending}
        return [
            (entry_id, fields, deliveries.get(as_text(entry_id), 1)) for entry_id, fields in claimed
        ]

    async def _handle_batch(self, entries: list[tuple[Any, Any, int]]) -> int:
        """Handles a batch, one lane at a time or up to ``concurrency`` at once, each lane in
        stream order; acknowledges what was handled in one XACK, even when a lane failed."""
        if self._lane is None or self._concurrency == 1:
            lanes = [entries]
        else:
            by_lane: dict[Hashable, list[tuple[Any, Any, int]]] = {}
            for entry in entries:
                by_lane.setdefault(self._lane_of(entry, self._lane), []).append(entry)
            lanes = list(by_lane.values())
        slots = asyncio.Semaphore(self._concurrency)
        outcomes = await asyncio.gather(
            *(self._handle_lane(lane, slots) for lane in lanes), return_exceptions=True
        )
        handled = [
            entry_id for outcome in outcomes if isinstance(outcome, list) for entry_id in outcome
        ]
        if handled:
            await self._redis.xack(self.stream, self.group, *handled)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return len(entries)

    def _lane_of(self, entry: tuple[Any, Any, int], lane: Callable[[M], Hashable]) -> Hashable:
        """The entry's lane: its message's, or one of its own when it has none to read (it
        will be dead-lettered). Parsed here and again when handled: a payload is small, and
        handling keeps one path for every entry."""
        raw_id: Hashable = entry[0]
        fields = entry[1]
        try:
            return lane(self._decode(fields)) if fields else raw_id
        except PoisonMessage:
            return raw_id

    async def _handle_lane(
        self, lane: list[tuple[Any, Any, int]], slots: asyncio.Semaphore
    ) -> list[str]:
        handled: list[str] = []
        for raw_id, fields, deliveries in lane:
            entry_id = as_text(raw_id)
            if not fields:
                # Trimmed or deleted while pending: nothing left to handle or dead-letter.
                handled.append(entry_id)
                continue
            async with slots:
                if await self._handle(entry_id, fields, deliveries):
                    handled.append(entry_id)
        return handled

    async def _handle(self, entry_id: str, fields: Mapping[bytes, bytes], deliveries: int) -> bool:
        """True when handled (ack with the batch); False when left pending or dead-lettered."""
        with self._tracer.start_as_current_span(
            f"{self.stream} process",
            context=entry_context(fields),
            kind=SpanKind.CONSUMER,
            attributes={
                **_messaging_attributes(self.stream),
                "messaging.message.id": entry_id,
                "messaging.consumer.group.name": self.group,
                "messaging.redis.deliveries": deliveries,
            },
        ) as span:
            try:
                message = self._decode(fields)
            except PoisonMessage as error:
                await self._dead_letter(entry_id, fields, deliveries, str(error))
                span.set_status(Status(StatusCode.ERROR, "poison entry"))
                return False
            if deliveries > self._max_deliveries:
                # Handling it killed consumers before they could ack: do not try again.
                await self._dead_letter(entry_id, fields, deliveries, "too many deliveries")
                return False
            try:
                await self._handler(StreamEntry(self.stream, entry_id, message, deliveries))
            except PoisonMessage as error:
                await self._dead_letter(entry_id, fields, deliveries, str(error) or "poison")
                span.set_status(Status(StatusCode.ERROR, "poison entry"))
                return False
            except Exception as error:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                if is_infrastructure_error(error):
                    await self._wait_for_dependency(entry_id, deliveries, error)
                    return False
                if deliveries >= self._max_deliveries:
                    await self._dead_letter(entry_id, fields, deliveries, type(error).__name__)
                else:
                    log.warning(
                        "stream handler failed; entry stays pending for a retry",
                        extra={
                            "stream": self.stream,
                            "entry_id": entry_id,
                            "error": type(error).__name__,
                        },
                    )
                return False
            return True

    async def _wait_for_dependency(self, entry_id: str, deliveries: int, error: Exception) -> None:
        """Leaves the entry pending without this delivery counting toward its dead letter: a
        dependency was away (Postgres, a peer), which is no fault of the entry's, and an
        outage longer than ``max_deliveries`` redeliveries must not cost a customer's
        message. XCLAIM to itself with RETRYCOUNT puts the count back."""
        await self._redis.xclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=0,
            message_ids=[entry_id],
            retrycount=max(deliveries - 1, 0),
            justid=True,
        )
        log.warning(
            "stream handler waits for a dependency; entry stays pending",
            extra={"stream": self.stream, "entry_id": entry_id, "error": type(error).__name__},
        )

    def _decode(self, fields: Mapping[bytes, bytes]) -> M:
        expected = self._message_type.DESCRIPTOR.full_name
        kind = fields.get(FIELD_TYPE, b"").decode(errors="replace")
        if kind != expected:
            raise PoisonMessage(f"entry type {kind!r} is not {expected}")
        message = self._message_type()
        try:
            message.ParseFromString(fields.get(FIELD_PAYLOAD, b""))
        except DecodeError as error:
            raise PoisonMessage(f"payload does not parse as {expected}") from error
        return message

    async def _dead_letter(
        self, entry_id: str, fields: Mapping[bytes, bytes], deliveries: int, reason: str
    ) -> None:
        dead_fields = {
            **fields,
            b"origin_stream": self.stream.encode(),
            b"origin_id": entry_id.encode(),
            b"deliveries": str(deliveries).encode(),
            b"reason": reason.encode(),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letter_stream, dead_fields)  # type: ignore[arg-type]
            pipe.xack(self.stream, self.group, entry_id)
            await pipe.execute()
        log.error(
            "stream entry dead-lettered",
            extra={
                "stream": self.stream,
                "entry_id": entry_id,
                "deliveries": deliveries,
                "reason": reason,
            },
        )


def _group_gone(error: ResponseError) -> bool:
    """Redis lost the stream or its group (FLUSHALL, a restart without persistence)."""
    text = str(error)
    # NOGROUP from any group command; Redis 7 tells a client blocked in XREADGROUP that the
    # key went with UNBLOCKED instead.
    return text.startswith("NOGROUP") or "the stream key no longer exists" in text


async def trim_acknowledged(redis: aioredis.Redis, stream: str, *, before_ms: int) -> int:
    """Drops the entries of ``stream`` older than ``before_ms`` (Unix milliseconds) that every
    consumer group has read and acknowledged; how many.

    What a group still needs starts at its oldest pending entry or, with none pending, at its
    last delivered one (kept, so the stream never empties behind a group). A stream no group
    reads is left whole: nobody has said what is done with its entries. Groups only move
    forward, so what this reads cannot go stale before the XTRIM: an entry delivered meanwhile
    is newer than the last delivered one it read.
    """
    groups = await _groups(redis, stream)
    if not groups:
        return 0
    keep_from = (before_ms, 0)
    for group in groups:
        needed = _entry_order(as_text(group["last-delivered-id"]))
        if group["pending"]:
            pending = await _oldest_pending(redis, stream, group["name"])
            needed = min(needed, pending or needed)
        keep_from = min(keep_from, needed)
    removed: int = await redis.xtrim(
        stream, minid=f"{keep_from[0]}-{keep_from[1]}", approximate=False
    )
    return removed


def _entry_order(entry_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


async def oldest_unhandled_age_s(
    redis: aioredis.Redis, stream: str, group: str, *, now_ms: int
) -> float:
    """How long the oldest entry ``group`` has not acknowledged has been on ``stream``, in
    seconds (0 when it has handled everything): pending with a consumer, or not yet read.

    The age of the work waiting, rather than its count, is what a replica count or an alert
    can be set against: it reads the same for a trickle and a flood.
    """
    groups = await _groups(redis, stream)
    if groups is None:  # no such stream: nothing waits
        return 0.0
    found = [g for g in groups if as_text(g["name"]) == group]
    if not found:
        # No group yet: everything on the stream waits for it.
        first: Any = await redis.xrange(stream, count=1)
        oldest = _entry_order(as_text(first[0][0])) if first else None
        return _age_s(oldest, now_ms)
    candidates = []
    if found[0]["pending"] and (pending := await _oldest_pending(redis, stream, group)):
        candidates.append(pending)
    last_delivered = as_text(found[0]["last-delivered-id"])
    unread: Any = await redis.xrange(stream, min=f"({last_delivered}", count=1)
    if unread:
        candidates.append(_entry_order(as_text(unread[0][0])))
    return _age_s(min(candidates, default=None), now_ms)


async def _groups(redis: aioredis.Redis, stream: str) -> list[dict[str, Any]] | None:
    """XINFO GROUPS of ``stream``; None when there is no such stream."""
    try:
        groups: list[dict[str, Any]] = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    return groups


async def _oldest_pending(
    redis: aioredis.Redis, stream: str, group: str | bytes
) -> tuple[int, int] | None:
    """The group's oldest pending entry; None if it acknowledged them all since it was asked
    how many it had."""
    summary: dict[str, Any] = await redis.xpending(stream, group)
    oldest = summary.get("min")
    return None if oldest is None else _entry_order(as_text(oldest))


def _age_s(entry: tuple[int, int] | None, now_ms: int) -> float:
    return 0.0 if entry is None else max(0, now_ms - entry[0]) / 1000
