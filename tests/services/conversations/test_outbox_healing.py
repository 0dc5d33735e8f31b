"""Redis losing a stream the outbox published to (FLUSHALL, a restart without persistence, a
failover to a lagging replica): the relay notices and publishes the retained window again, so
a consumer that dedupes on the message id sees every inbound event exactly once in effect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tests.redis_streams import stream_entries
from tests.services.conversations.conversations_testkit import (
    inbound,
    make_settings,
    number,
    tenant,
)
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh.events.v1.events_pb2 import InboundMessageEvent
from wamesh_conversations import validation
from wamesh_conversations.app import conversations_service
from wamesh_conversations.outbox import OutboxRelay
from wamesh_conversations.store import INBOUND_STREAM, ConversationStore
from wamesh_kit.db import make_engine
from wamesh_kit.localinfra import LocalRedis
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.redis_client import make_redis
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_INTERNAL_TOKEN
from wamesh_kit.streams import StreamConsumer, StreamEntry

HISTORY = next(h for h in service_histories() if h.name == "conversations")
REPUBLISHED = "wamesh_outbox_republished_total"
EVENT_TYPE = InboundMessageEvent.DESCRIPTOR.full_name.encode()


@pytest.fixture
def dsn(new_database: Callable[[str], str]) -> str:
    """A database of this test's own: the relay's memory of streams starts empty."""
    url = new_database("heal")
    upgrade_database(url, HISTORY)
    return url


@pytest.fixture
async def redis(own_redis: LocalRedis) -> AsyncIterator[aioredis.Redis]:
    client = make_redis(own_redis.url)
    try:
        yield client
    finally:
        await client.aclose()


class Inbox:
    """A test consumer's handler: applies each message once, however often it is delivered."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.deliveries: Counter[str] = Counter()

    async def __call__(self, entry: StreamEntry[InboundMessageEvent]) -> None:
        message_id = entry.message.message_id
        self.deliveries[message_id] += 1
        if self.deliveries[message_id] == 1:
            self.applied.append(message_id)

    async def until_applied(self, message_ids: list[str], running: asyncio.Task[None]) -> None:
        """Wait until every one is applied; fail if the consumer died or they never come."""
        wanted = set(message_ids)

        async def arrived() -> None:
            while True:
                if wanted <= set(self.applied):
                    return
                if running.done():
                    running.result()  # raises what killed it
                    pytest.fail("the consumer stopped on its own")
                await asyncio.sleep(0.05)

        try:
            await asyncio.wait_for(arrived(), 30)
        except TimeoutError:
            missing = len(wanted - set(self.applied))
            pytest.fail(f"{missing} of {len(wanted)} events never reached the consumer")


class PausableConsumer:
    """One StreamConsumer of the inbound stream, whose run the test stops and starts again."""

    def __init__(self, redis: aioredis.Redis, inbox: Inbox) -> None:
        self.reader = StreamConsumer(
            redis,
            INBOUND_STREAM,
            group="healing-test",
            consumer="c1",
            message_type=InboundMessageEvent,
            handler=inbox,
            block_ms=50,
        )
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self.reader.run(self._stop))
        return self._task

    async def halt(self) -> None:
        assert self._task is not None
        assert not self._task.done(), "the consumer had stopped"
        self._stop.set()
        await asyncio.wait_for(self._task, 10)

    async def close(self) -> None:
        """Whatever happened: no consumer task outlives the test."""
        self._stop.set()
        if self._task is not None and not self._task.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)


async def stream_message_ids(redis: aioredis.Redis) -> list[str]:
    """The inbound stream's message ids, in stream order (entries of other kinds skipped)."""
    entries = await stream_entries(redis, INBOUND_STREAM)
    return [
        InboundMessageEvent.FromString(fields[b"payload"]).message_id
        for _, fields in entries
        if fields.get(b"type") == EVENT_TYPE
    ]


async def until_on_stream(redis: aioredis.Redis, message_ids: list[str]) -> None:
    async def arrived() -> None:
        while True:
            if set(message_ids) <= set(await stream_message_ids(redis)):
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(arrived(), 30)


Recorder = Callable[[int], Awaitable[list[str]]]
Fault = Callable[[aioredis.Redis, LocalRedis, Recorder], Awaitable[list[str]]]


async def flushall(redis: aioredis.Redis, own_redis: LocalRedis, record: Recorder) -> list[str]:
    await redis.flushall()
    return []


async def restart(redis: aioredis.Redis, own_redis: LocalRedis, record: Recorder) -> list[str]:
    """Redis stopped and started again without persistence; writes go on meanwhile."""
    await asyncio.to_thread(own_redis.stop)
    while_down = await record(3)
    await asyncio.to_thread(own_redis.start)
    await redis.connection_pool.disconnect()  # the test's connections died with the server
    return while_down


@pytest.mark.parametrize("fault", [flushall, restart], ids=["flushall", "restart"])
async def test_a_consumer_sees_every_inbound_event_once_in_effect_across_a_lost_stream(
    dsn: str, own_redis: LocalRedis, redis: aioredis.Redis, fault: Fault
) -> None:
    settings = make_settings(dsn, own_redis.url)
    tenant_id, sender, customer = tenant(), number(), number()
    inbox = Inbox()
    consumer = PausableConsumer(redis, inbox)
    async with (
        conversations_service(settings, registry=CollectorRegistry()) as server,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_INTERNAL_TOKEN) as channel,
        contextlib.AsyncExitStack() as cleanup,
    ):
        cleanup.push_async_callback(consumer.close)
        stub = conversations_pb2_grpc.ConversationStoreStub(channel)

        async def record(count: int) -> list[str]:
            ids = []
            for index in range(count):
                request = inbound(tenant_id, customer, sender, body=f"#{index}")
                ids.append((await stub.RecordInbound(request)).message.id)
            return ids

        running = consumer.start()
        consumed = await record(5)
        await inbox.until_applied(consumed, running)
        # The consumer falls behind: these are published, and then lost before it reads them.
        await consumer.halt()
        unread = await record(5)
        await until_on_stream(redis, unread)
        while_down = await fault(redis, own_redis, record)
        later = await record(5)
        # Only once these are on the stream, under fresh ids higher than the lost ones: the
        # relay must have noticed the loss before appending them, not from the consumer's
        # group (its MKSTREAM would leave an empty stream at 0-0).
        await until_on_stream(redis, later)
        running = consumer.start()
        everything = consumed + unread + while_down + later
        await inbox.until_applied(everything, running)
        assert not running.done()
        await consumer.halt()

    assert sorted(inbox.applied) == sorted(everything)
    assert len(inbox.applied) == len(everything)
    # What the consumer had before the loss came again: only its dedupe kept it once.
    assert all(inbox.deliveries[message_id] >= 2 for message_id in consumed)


@dataclass
class Kit:
    """The relay driven by hand over a real store, Postgres and Redis."""

    relay: OutboxRelay
    store: ConversationStore
    redis: aioredis.Redis
    registry: CollectorRegistry
    tenant_id: str
    sender: str
    customer: str

    async def record(self, count: int) -> list[str]:
        ids = []
        for index in range(count):
            request = inbound(self.tenant_id, self.customer, self.sender, body=f"#{index}")
            participants = validation.inbound(request)
            response = await self.store.record_inbound(request, participants, datetime.now(UTC))
            ids.append(response.message.id)
        return ids

    async def drain(self) -> None:
        while await self.relay.relay_once():
            pass

    def republished(self) -> float:
        value = self.registry.get_sample_value(REPUBLISHED, {"stream": INBOUND_STREAM})
        return value or 0.0


@pytest.fixture
def heal_check_s() -> float:
    return 3600.0  # only the check in the append script, unless a test asks otherwise


@pytest.fixture
def stream_retention_s() -> int:
    return 3600  # nothing trimmed, unless a test asks otherwise


@pytest.fixture
async def kit(
    dsn: str, redis: aioredis.Redis, heal_check_s: float, stream_retention_s: int
) -> AsyncIterator[Kit]:
    engine = make_engine(dsn, pool_size=2)
    registry = CollectorRegistry()
    relay = OutboxRelay(
        engine,
        redis,
        batch_size=4,
        poll_s=0.05,
        retention_s=86_400,
        heal_check_s=heal_check_s,
        stream_retention_s=stream_retention_s,
        registry=registry,
    )
    try:
        yield Kit(relay, ConversationStore(engine), redis, registry, tenant(), number(), number())
    finally:
        await engine.dispose()


async def test_an_empty_stream_a_consumer_group_made_after_a_restart_reads_as_lost(
    kit: Kit, own_redis: LocalRedis, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    before = await kit.record(6)
    await kit.drain()
    await asyncio.to_thread(own_redis.stop)
    await asyncio.to_thread(own_redis.start)
    await redis.connection_pool.disconnect()  # the pooled connections died with the server
    # A consumer is back first: MKSTREAM leaves an empty stream whose last id is 0-0.
    await redis.xgroup_create(INBOUND_STREAM, "early", id="0", mkstream=True)
    after = await kit.record(3)
    await kit.drain()

    # The retained window first, in id order, then what is new; each once.
    assert await stream_message_ids(redis) == before + after
    assert kit.republished() == len(before)
    [warning] = [r for r in caplog.records if "publishing its retained" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert getattr(warning, "stream", None) == INBOUND_STREAM
    assert getattr(warning, "requeued", None) == len(before)


@pytest.mark.parametrize("heal_check_s", [0.0])
async def test_a_flushed_stream_is_healed_with_nothing_new_to_publish(
    kit: Kit, redis: aioredis.Redis
) -> None:
    before = await kit.record(6)
    await kit.drain()
    await redis.flushall()
    await kit.drain()

    assert await stream_message_ids(redis) == before
    assert kit.republished() == len(before)


@pytest.mark.parametrize("heal_check_s", [0.0])
async def test_entries_appended_by_others_are_no_loss_and_nothing_goes_twice(
    kit: Kit, redis: aioredis.Redis
) -> None:
    first = await kit.record(6)
    await kit.drain()
    await redis.xadd(INBOUND_STREAM, {b"type": b"someone.else"})
    second = await kit.record(6)
    await kit.drain()
    await kit.drain()

    assert await stream_message_ids(redis) == first + second
    assert kit.republished() == 0


def just_below(entry_id: str) -> str:
    """The highest id lower than ``entry_id``'s millisecond: its sequence part is longer."""
    ms, _ = entry_id.split("-")
    return f"{int(ms) - 1}-{2**64 - 1}"


@pytest.mark.parametrize(
    ("replica_at", "lost"),
    [(just_below, True), (lambda entry_id: entry_id, False)],
    ids=["replica-behind", "replica-caught-up"],
)
async def test_a_failover_to_a_replica_behind_the_relay_reads_as_lost(
    kit: Kit, redis: aioredis.Redis, replica_at: Callable[[str], str], lost: bool
) -> None:
    before = await kit.record(6)
    await kit.drain()
    info = await redis.xinfo_stream(INBOUND_STREAM)
    last_id = info["last-generated-id"].decode()
    # The replica's stream ends at ``replica_at(last_id)``: what it has of ours is not needed.
    await redis.delete(INBOUND_STREAM)
    await redis.xadd(INBOUND_STREAM, {b"type": b"replica"}, id=replica_at(last_id))
    after = await kit.record(2)
    await kit.drain()

    assert await stream_message_ids(redis) == (before + after if lost else after)
    assert kit.republished() == (len(before) if lost else 0)


@pytest.mark.parametrize("stream_retention_s", [0])
async def test_trimming_what_every_group_acknowledged_is_no_loss(
    kit: Kit, redis: aioredis.Redis
) -> None:
    first = await kit.record(6)
    await kit.drain()
    await redis.xgroup_create(INBOUND_STREAM, "reader", id="0")
    read: Any = await redis.xreadgroup("reader", "c1", {INBOUND_STREAM: ">"}, count=4)
    await redis.xack(INBOUND_STREAM, "reader", *[entry_id for entry_id, _ in read[0][1]])

    # Three read and acknowledged go; the fourth is the group's last delivered, kept.
    assert await kit.relay.trim_streams() == 3
    assert await stream_message_ids(redis) == first[3:]
    second = await kit.record(2)
    await kit.drain()

    assert await stream_message_ids(redis) == first[3:] + second
    assert kit.republished() == 0
