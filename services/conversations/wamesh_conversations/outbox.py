"""The outbox relay: moves committed events from Postgres to their Redis streams.

Events are written in the transaction of the change that caused them, so they exist iff
the change does. The relay publishes them in id order and then marks them published; a
crash between the two publishes a batch again, which consumers tolerate (they dedupe on
the message id). One relay runs at a time across all replicas (a transaction-scoped
advisory lock), which keeps each conversation's events in order. Redis down: rows wait.

Redis losing a stream (FLUSHALL, a restart without persistence, a failover to a lagging
replica) would lose events Postgres calls published, so the relay remembers, per stream, the
last entry id it appended (``outbox_streams``, written with the rows it marks published). A
stream whose last generated id is now lower, or that is gone, lost entries: its retained
published rows are marked unpublished again and go out once more, oldest first, ahead of
newer rows. The check runs in the append script, atomically with the append, so a flush
cannot slip between check and append, where a fresh entry would hide the loss (after a
restart, new ids are higher than the lost ones); and every ``heal_check_s`` for every stream,
so a stream is healed with nothing new to publish.

Its loop is also the service's housekeeping: every ``PURGE_EVERY_S`` it deletes published
rows past ``retention_s`` and status callbacks kept aside (``pending_statuses``) past
``pending_status_retention_s``, whose SID no message claimed in that time, and trims each
stream it publishes to of the entries older than ``stream_retention_s`` that every consumer
group has acknowledged: without it Redis would hold every event ever published.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

import redis.asyncio as aioredis
import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wamesh_conversations.schema import outbox, outbox_streams, pending_statuses
from wamesh_conversations.settings import (
    DEFAULT_PENDING_STATUS_RETENTION_S,
    DEFAULT_STREAM_RETENTION_S,
)
from wamesh_kit.background import pause
from wamesh_kit.redis_client import PipelinedScript, as_text
from wamesh_kit.rpc.errors import is_infrastructure_error
from wamesh_kit.streams import trim_acknowledged

log = logging.getLogger(__name__)

# pg_try_advisory_xact_lock key: "wamesh outbox relay", any constant all replicas share.
RELAY_LOCK = 0x7761_6D65_7368_0001
PURGE_EVERY_S = 60.0
COALESCE_S = 0.02
# XADD of each event (type, payload, traceparent, tracestate: four ARGV each after ARGV[1]; an
# empty trace field is left out) to the stream KEYS[1], in one script call: one XADD per
# command of a redis-py pipeline was a large share of the conversation store's CPU under
# load. One key per call, so it stays legal on Redis Cluster. ARGV[1] is the last entry id the
# relay appended to the stream ('' when none is known): a stream that no longer reaches it lost
# entries, and the call appends nothing and returns false. Otherwise it returns the id of its
# last XADD (ARGV[1] for a call with no events, a check alone). Ids are compared as digit
# strings: a sequence part may exceed what a Lua number holds exactly.
_APPEND = PipelinedScript(
    """
local function lower(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  if #a_ms ~= #b_ms then return #a_ms < #b_ms end
  if a_ms ~= b_ms then return a_ms < b_ms end
  if #a_seq ~= #b_seq then return #a_seq < #b_seq end
  return a_seq < b_seq
end
local last = ARGV[1]
if last ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    return false
  end
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      if lower(info[i + 1], last) then
        return false
      end
      break
    end
  end
end
for i = 2, #ARGV, 4 do
  local fields = {'type', ARGV[i], 'payload', ARGV[i + 1]}
  if ARGV[i + 2] ~= '' then
    fields[#fields + 1] = 'traceparent'
    fields[#fields + 1] = ARGV[i + 2]
  end
  if ARGV[i + 3] ~= '' then
    fields[#fields + 1] = 'tracestate'
    fields[#fields + 1] = ARGV[i + 3]
  end
  last = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
return last
"""
)
# The marker rides along with each row, so the hot path reads it with no statement of its own.
_UNPUBLISHED = (
    sa.select(outbox, outbox_streams.c.last_entry_id)
    .select_from(outbox.outerjoin(outbox_streams, outbox_streams.c.stream == outbox.c.stream))
    .where(outbox.c.published_at.is_(None))
    .order_by(outbox.c.id)
)
# = ANY(array), not IN (...): one statement text for every batch size, so asyncpg prepares
# it once, where an expanded IN list was a new prepared statement per size. The markers are
# written by the same statement: the relay remembers exactly what it marked published.
_MARK_PUBLISHED = sa.text(
    """
    WITH marked AS (
        UPDATE outbox SET published_at = now() WHERE id = ANY(CAST(:ids AS bigint[]))
    )
    INSERT INTO outbox_streams (stream, last_entry_id)
    SELECT * FROM unnest(CAST(:streams AS text[]), CAST(:entry_ids AS text[]))
    ON CONFLICT (stream) DO UPDATE SET last_entry_id = excluded.last_entry_id
    """
)
# The lost streams' retained rows go out again; their markers go, since Redis holds none of
# what they name (and the next append must not be refused against them).
_REQUEUE = sa.text(
    """
    WITH requeued AS (
        UPDATE outbox SET published_at = NULL
        WHERE stream = ANY(CAST(:streams AS text[])) AND published_at IS NOT NULL
        RETURNING stream
    ), forgotten AS (
        DELETE FROM outbox_streams WHERE stream = ANY(CAST(:streams AS text[]))
    )
    SELECT stream, count(*) AS requeued FROM requeued GROUP BY stream
    """
)
_Calls = list[tuple[list[str], list[bytes | str]]]


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: aioredis.Redis,
        *,
        batch_size: int,
        poll_s: float,
        retention_s: int,
        heal_check_s: float = 5.0,
        pending_status_retention_s: int = DEFAULT_PENDING_STATUS_RETENTION_S,
        stream_retention_s: int = DEFAULT_STREAM_RETENTION_S,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._engine = engine
        self._redis = redis
        self._batch_size = batch_size
        self._poll_s = poll_s
        self._retention_s = retention_s
        self._heal_check_s = heal_check_s
        self._pending_status_retention_s = pending_status_retention_s
        self._stream_retention_s = stream_retention_s
        self._wake = asyncio.Event()
        # The first round purges, however soon after boot (monotonic zero) the process starts.
        self._purged_at = -float("inf")
        self._checked_at = -float("inf")
        self._published = Counter(
            "wamesh_outbox_published",
            "Outbox events published to Redis streams",
            registry=registry,
        )
        self._republished = Counter(
            "wamesh_outbox_republished",
            "Outbox events queued to be published again because Redis lost their stream",
            ["stream"],
            registry=registry,
        )
        self._lag = Gauge(
            "wamesh_outbox_lag_seconds",
            "Age of the oldest event in the last batch the relay published",
            registry=registry,
        )

    def notify(self) -> None:
        """A write committed an event: publish it now rather than at the next poll."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish one batch; how many events it held (0: nothing to do or another relay)."""
        requeued: dict[str, int] = {}
        async with self._engine.begin() as connection:
            if not await connection.scalar(
                sa.select(sa.func.pg_try_advisory_xact_lock(RELAY_LOCK))
            ):
                return 0
            if time.monotonic() - self._checked_at >= self._heal_check_s:
                self._checked_at = time.monotonic()
                requeued |= await self._heal_lost_streams(connection)
            rows, lost = await self._publish(connection)
            if lost:
                requeued |= await self._requeue(connection, lost)
                # The requeued window goes out now, ahead of every newer row.
                again, _ = await self._publish(connection)
                rows += again
        self._count_requeued(requeued)
        if rows:
            self._published.inc(len(rows))
            oldest = min(row["created_at"] for row in rows)
            self._lag.set(max(0.0, time.time() - oldest.timestamp()))
        return len(rows)

    async def _publish(self, connection: AsyncConnection) -> tuple[list[sa.RowMapping], set[str]]:
        """Append the next batch and mark it published; the streams that had lost entries.

        A lost stream's rows of this batch stay unpublished: they go after its requeued ones.
        """
        batch = _UNPUBLISHED.limit(self._batch_size)
        rows = list((await connection.execute(batch)).mappings().all())
        if not rows:
            return [], set()
        calls = _appends(rows)
        results = await _APPEND.run(self._redis, calls)
        lost = {keys[0] for (keys, _), result in zip(calls, results, strict=True) if result is None}
        last_ids = {
            keys[0]: as_text(result)
            for (keys, _), result in zip(calls, results, strict=True)
            if keys[0] not in lost
        }
        published = [row for row in rows if row["stream"] not in lost]
        if published:
            await connection.execute(
                _MARK_PUBLISHED,
                {
                    "ids": [row["id"] for row in published],
                    "streams": list(last_ids),
                    "entry_ids": list(last_ids.values()),
                },
            )
        return published, lost

    async def _heal_lost_streams(self, connection: AsyncConnection) -> dict[str, int]:
        """Check every stream the relay published to, not only those with rows waiting."""
        markers = (await connection.execute(sa.select(outbox_streams))).all()
        if not markers:
            return {}
        calls: _Calls = [([stream], [last_entry_id]) for stream, last_entry_id in markers]
        results = await _APPEND.run(self._redis, calls)
        lost = {keys[0] for (keys, _), result in zip(calls, results, strict=True) if result is None}
        return await self._requeue(connection, lost) if lost else {}

    async def _requeue(
        self, connection: AsyncConnection, streams: Collection[str]
    ) -> dict[str, int]:
        result = await connection.execute(_REQUEUE, {"streams": sorted(streams)})
        counts = {stream: 0 for stream in streams}
        counts.update({str(stream): int(count) for stream, count in result})
        return counts

    def _count_requeued(self, requeued: dict[str, int]) -> None:
        """After the commit: until then the rows were not queued again."""
        for stream, count in requeued.items():
            self._republished.labels(stream=stream).inc(count)
            log.warning(
                "Redis lost entries of an outbox stream; publishing its retained events again",
                extra={"stream": stream, "requeued": count},
            )

    async def purge(self) -> int:
        """Delete the published rows past their retention; how many."""
        async with self._engine.begin() as connection:
            result = await connection.execute(
                sa.delete(outbox).where(_older_than(outbox.c.published_at, self._retention_s))
            )
        return result.rowcount or 0

    async def purge_pending_statuses(self) -> int:
        """Delete the status callbacks kept aside past their retention; how many.

        Any replica may run it: it takes no lock, and UpdateOutbound claiming one of these
        rows at the same moment either takes it first or finds it gone.
        """
        async with self._engine.begin() as connection:
            result = await connection.execute(
                sa.delete(pending_statuses).where(
                    _older_than(pending_statuses.c.created_at, self._pending_status_retention_s)
                )
            )
        return result.rowcount or 0

    async def trim_streams(self) -> int:
        """Trim every stream the relay publishes to of the entries past ``stream_retention_s``
        that all its consumer groups acknowledged; how many went."""
        async with self._engine.connect() as connection:
            streams = (await connection.execute(sa.select(outbox_streams.c.stream))).scalars()
            names = list(streams.all())
        before_ms = int((time.time() - self._stream_retention_s) * 1000)
        trimmed = 0
        for stream in names:
            trimmed += await trim_acknowledged(self._redis, stream, before_ms=before_ms)
        return trimmed

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; failures are logged and retried, never raised."""
        while not stop.is_set():
            try:
                moved = await self.relay_once()
                if time.monotonic() - self._purged_at > PURGE_EVERY_S:
                    self._purged_at = time.monotonic()
                    await self.purge()
                    await self.purge_pending_statuses()
                    await self.trim_streams()
            except Exception as error:  # a dead relay would strand every event: keep going
                if is_infrastructure_error(error):
                    log.warning("outbox relay waiting", extra={"error": str(error)})
                else:
                    log.exception("outbox relay failed; retrying")
                await pause(stop, 1.0)
                continue
            if moved < self._batch_size:
                await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(
            waiters,
            timeout=min(self._poll_s, self._heal_check_s),
            return_when=asyncio.FIRST_COMPLETED,
        )
        for waiter in pending:
            waiter.cancel()
        if self._wake.is_set() and not stop.is_set():
            # Let the writes of the next COALESCE_S join this batch: under load, one relay
            # transaction per write was a large share of the service's CPU.
            await asyncio.sleep(COALESCE_S)


def _older_than(column: sa.Column[Any], seconds: int) -> sa.ColumnElement[bool]:
    return column < sa.func.now() - sa.text(f"interval '{int(seconds)} seconds'")


def _appends(rows: Sequence[sa.RowMapping]) -> _Calls:
    """One _APPEND call per run of consecutive rows of one stream, so order is kept."""
    calls: _Calls = []
    for stream, run in itertools.groupby(rows, key=lambda row: str(row["stream"])):
        events: list[bytes | str] = []
        for row in run:
            if not events:
                events.append(row["last_entry_id"] or "")
            events += (row["message_type"], bytes(row["payload"]))
            events += (row["traceparent"] or "", row["tracestate"] or "")
        calls.append(([stream], events))
    return calls
