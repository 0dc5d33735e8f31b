"""The outbox relay: moves committed events from Postgres to their Redis streams.

Events are written in the transaction of the change that caused them, so they exist iff
the change does. The relay publishes them in id order and then marks them published; a
crash between the two publishes a batch again, which consumers tolerate (they dedupe on
the message id). One relay runs at a time across all replicas (a transaction-scoped
advisory lock), which keeps each conversation's events in order. Redis down: rows wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine

from wamesh.libs.redis_client import PipelinedScript
from wamesh.libs.rpc.errors import is_infrastructure_error
from wamesh.services.conversations.schema import outbox

log = logging.getLogger(__name__)

# pg_try_advisory_xact_lock key: "wamesh outbox relay", any constant all replicas share.
RELAY_LOCK = 0x7761_6D65_7368_0001
PURGE_EVERY_S = 60.0
COALESCE_S = 0.02
# XADD of each event (type, payload, traceparent, tracestate: four ARGV each; an empty trace
# field is left out) to the stream KEYS[1], in one script call: one XADD per command of a
# redis-py pipeline cost a tenth of the conversation store's CPU under load. One key per
# call, so it stays legal on Redis Cluster.
_APPEND = PipelinedScript(
    """
for i = 1, #ARGV, 4 do
  local fields = {'type', ARGV[i], 'payload', ARGV[i + 1]}
  if ARGV[i + 2] ~= '' then
    fields[#fields + 1] = 'traceparent'
    fields[#fields + 1] = ARGV[i + 2]
  end
  if ARGV[i + 3] ~= '' then
    fields[#fields + 1] = 'tracestate'
    fields[#fields + 1] = ARGV[i + 3]
  end
  redis.call('XADD', KEYS[1], '*', unpack(fields))
end
return #ARGV / 4
"""
)
# = ANY(array), not IN (...): one statement text for every batch size, so asyncpg prepares
# it once, where an expanded IN list was a new prepared statement per size.
_MARK_PUBLISHED = (
    sa.update(outbox)
    .where(outbox.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(outbox.c.id.type))))
    .values(published_at=sa.func.now())
)


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: aioredis.Redis,
        *,
        batch_size: int,
        poll_s: float,
        retention_s: int,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._engine = engine
        self._redis = redis
        self._batch_size = batch_size
        self._poll_s = poll_s
        self._retention_s = retention_s
        self._wake = asyncio.Event()
        self._purged_at = 0.0
        self._published = Counter(
            "wamesh_outbox_published",
            "Outbox events published to Redis streams",
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
        async with self._engine.begin() as connection:
            if not await connection.scalar(
                sa.select(sa.func.pg_try_advisory_xact_lock(RELAY_LOCK))
            ):
                return 0
            rows = (
                (
                    await connection.execute(
                        sa.select(outbox)
                        .where(outbox.c.published_at.is_(None))
                        .order_by(outbox.c.id)
                        .limit(self._batch_size)
                    )
                )
                .mappings()
                .all()
            )
            if not rows:
                return 0
            await _APPEND.run(self._redis, _appends(rows))
            await connection.execute(_MARK_PUBLISHED, {"ids": [row["id"] for row in rows]})
        self._published.inc(len(rows))
        self._lag.set(max(0.0, time.time() - rows[0]["created_at"].timestamp()))
        return len(rows)

    async def purge(self) -> int:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                sa.delete(outbox).where(
                    outbox.c.published_at
                    < sa.func.now() - sa.text(f"interval '{int(self._retention_s)} seconds'")
                )
            )
        return result.rowcount or 0

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set; failures are logged and retried, never raised."""
        while not stop.is_set():
            try:
                moved = await self.relay_once()
                if time.monotonic() - self._purged_at > PURGE_EVERY_S:
                    self._purged_at = time.monotonic()
                    await self.purge()
            except Exception as error:  # a dead relay would strand every event: keep going
                if is_infrastructure_error(error):
                    log.warning("outbox relay waiting", extra={"error": str(error)})
                else:
                    log.exception("outbox relay failed; retrying")
                await _wait(stop, 1.0)
                continue
            if moved < self._batch_size:
                await self._idle(stop)

    async def _idle(self, stop: asyncio.Event) -> None:
        self._wake.clear()
        waiters = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())}
        _, pending = await asyncio.wait(
            waiters, timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            waiter.cancel()
        if self._wake.is_set() and not stop.is_set():
            # Let the writes of the next 20 ms join this batch: under load one
            # relay transaction per write cost a tenth of the service's CPU.
            await asyncio.sleep(COALESCE_S)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _appends(rows: Sequence[sa.RowMapping]) -> list[tuple[list[str], list[bytes | str]]]:
    """One _APPEND call per run of consecutive rows of one stream, so order is kept."""
    calls: list[tuple[list[str], list[bytes | str]]] = []
    for stream, run in itertools.groupby(rows, key=lambda row: str(row["stream"])):
        events: list[bytes | str] = []
        for row in run:
            events += (row["message_type"], bytes(row["payload"]))
            events += (row["traceparent"] or "", row["tracestate"] or "")
        calls.append(([stream], events))
    return calls
