"""Streams on a real Redis: delivery, trace context, reclaim, dead letters, restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.redis_streams import stream_entries
from wamesh.events.v1.events_pb2 import MessageStatusEvent, OutboundJobEvent
from wamesh_kit.errors import Unavailable
from wamesh_kit.localinfra import LocalRedis
from wamesh_kit.redis_client import as_text, make_redis
from wamesh_kit.streams import (
    Handler,
    PoisonMessage,
    StreamConsumer,
    StreamEntry,
    StreamProducer,
    encode_entry,
    oldest_unhandled_age_s,
    trim_acknowledged,
)

_counter = 0


@pytest.fixture
def stream() -> str:
    global _counter
    _counter += 1
    return f"wamesh:{{t1}}:test-stream-{_counter}"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = make_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


class Recorder:
    """A handler that records what it saw and fails the first ``failures`` calls."""

    def __init__(self, failures: int = 0, poison: bool = False) -> None:
        self.seen: list[StreamEntry[OutboundJobEvent]] = []
        self.failures = failures
        self.poison = poison

    async def __call__(self, entry: StreamEntry[OutboundJobEvent]) -> None:
        self.seen.append(entry)
        if self.poison:
            raise PoisonMessage("recipient is not a WhatsApp number")
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("transient")


def consumer(
    redis: aioredis.Redis,
    stream: str,
    handler: Handler[OutboundJobEvent],
    name: str = "c1",
    **options: object,
) -> StreamConsumer[OutboundJobEvent]:
    return StreamConsumer(
        redis,
        stream,
        group="dispatcher",
        consumer=name,
        message_type=OutboundJobEvent,
        handler=handler,
        block_ms=10,
        **options,  # type: ignore[arg-type]
    )


def job(n: int) -> OutboundJobEvent:
    return OutboundJobEvent(job_id=f"job-{n}", tenant_id="t1", idempotency_key=f"key-{n}")


async def pending_count(redis: aioredis.Redis, stream: str) -> int:
    summary = await redis.xpending(stream, "dispatcher")
    return int(summary["pending"])


async def dead_letters(redis: aioredis.Redis, stream: str) -> list[dict[bytes, bytes]]:
    """The fields of every entry of ``stream``'s dead-letter stream, oldest first."""
    entries = await redis.xrange(f"{stream}:dead") or []
    dead = []
    for _, fields in entries:
        assert fields is not None
        dead.append({_raw(name): _raw(value) for name, value in fields.items()})
    return dead


def _raw(reply: bytes | str) -> bytes:
    assert isinstance(reply, bytes), "make_redis leaves decode_responses off"
    return reply


async def test_entries_published_before_the_group_exists_are_delivered_and_acked(
    redis: aioredis.Redis, stream: str
) -> None:
    producer = StreamProducer(redis, stream)
    ids = [await producer.publish(job(n)) for n in range(3)]
    handler = Recorder()
    assert await consumer(redis, stream, handler).run_once() == 3
    assert [entry.message.job_id for entry in handler.seen] == ["job-0", "job-1", "job-2"]
    assert [entry.entry_id for entry in handler.seen] == ids
    assert all(entry.deliveries == 1 for entry in handler.seen)
    assert await pending_count(redis, stream) == 0


async def test_a_batch_is_acknowledged_with_one_xack(redis: aioredis.Redis, stream: str) -> None:
    producer = StreamProducer(redis, stream)
    for n in range(10):
        await producer.publish(job(n))
    reader = consumer(redis, stream, Recorder())
    await reader.ensure_group()
    await redis.config_resetstat()
    assert await reader.run_once() == 10
    stats = await redis.info("commandstats")
    assert stats["cmdstat_xack"]["calls"] == 1
    assert await pending_count(redis, stream) == 0


async def test_lanes_are_handled_concurrently_each_in_stream_order(
    redis: aioredis.Redis, stream: str
) -> None:
    producer = StreamProducer(redis, stream)
    for n in range(3):
        for tenant in ("a", "b", "c"):
            await producer.publish(OutboundJobEvent(job_id=f"{tenant}-{n}", tenant_id=tenant))
    await redis.xadd(stream, {b"type": b"not.a.job", b"payload": b""})
    seen: list[str] = []
    active = most = 0
    together = asyncio.Event()

    async def handler(entry: StreamEntry[OutboundJobEvent]) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        if active == 2:
            together.set()
        try:
            # One entry at a time never has a second one running: this times out.
            await asyncio.wait_for(together.wait(), 5)
            await asyncio.sleep(0)
            seen.append(entry.message.job_id)
        finally:
            active -= 1

    reader = consumer(
        redis, stream, handler, lane=lambda job: job.tenant_id, concurrency=2, max_deliveries=1
    )
    assert await reader.run_once() == 10

    assert most == 2
    for tenant in ("a", "b", "c"):
        assert [j for j in seen if j.startswith(tenant)] == [f"{tenant}-{n}" for n in range(3)]
    assert await pending_count(redis, stream) == 0
    assert [fields[b"type"] for fields in await dead_letters(redis, stream)] == [b"not.a.job"]


async def test_consumer_span_is_a_child_of_the_producer_span(
    redis: aioredis.Redis, stream: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await StreamProducer(redis, stream, tracer_provider=provider).publish(job(1))
    await consumer(redis, stream, Recorder(), tracer_provider=provider).run_once()
    spans = {span.kind: span for span in exporter.get_finished_spans()}
    producer_span, consumer_span = spans[SpanKind.PRODUCER], spans[SpanKind.CONSUMER]
    assert consumer_span.context.trace_id == producer_span.context.trace_id
    assert consumer_span.parent is not None
    assert consumer_span.parent.span_id == producer_span.context.span_id
    assert consumer_span.attributes is not None
    assert consumer_span.attributes["messaging.destination.name"] == stream


async def test_a_failed_entry_stays_pending_and_is_reclaimed_by_another_consumer(
    redis: aioredis.Redis, stream: str
) -> None:
    await StreamProducer(redis, stream).publish(job(1))
    flaky = Recorder(failures=1)
    await consumer(redis, stream, flaky, name="a", min_idle_ms=0).run_once()
    assert await pending_count(redis, stream) == 1

    healthy = Recorder()
    await consumer(redis, stream, healthy, name="b", min_idle_ms=0).run_once()
    assert [(entry.message.job_id, entry.deliveries) for entry in healthy.seen] == [("job-1", 2)]
    assert await pending_count(redis, stream) == 0
    assert await redis.xlen(f"{stream}:dead") == 0


async def test_entries_younger_than_min_idle_are_not_stolen(
    redis: aioredis.Redis, stream: str
) -> None:
    await StreamProducer(redis, stream).publish(job(1))
    await consumer(redis, stream, Recorder(failures=1), name="a").run_once()
    other = Recorder()
    await consumer(redis, stream, other, name="b", min_idle_ms=60_000).run_once()
    assert other.seen == []
    assert await pending_count(redis, stream) == 1


async def test_after_max_deliveries_the_entry_moves_to_the_dead_letter_stream(
    redis: aioredis.Redis, stream: str
) -> None:
    await StreamProducer(redis, stream).publish(job(7))
    failing = Recorder(failures=100)
    reader = consumer(redis, stream, failing, min_idle_ms=0, max_deliveries=3)
    for _ in range(3):
        await reader.run_once(block=False)
    assert [entry.deliveries for entry in failing.seen] == [1, 2, 3]
    assert await pending_count(redis, stream) == 0
    [fields] = await dead_letters(redis, stream)
    assert fields[b"deliveries"] == b"3"
    assert fields[b"reason"] == b"RuntimeError"
    assert fields[b"origin_id"] == failing.seen[0].entry_id.encode()
    assert OutboundJobEvent.FromString(fields[b"payload"]).job_id == "job-7"
    await reader.run_once(block=False)
    assert len(failing.seen) == 3


async def test_a_dependency_away_for_longer_than_max_deliveries_costs_no_dead_letter(
    redis: aioredis.Redis, stream: str
) -> None:
    await StreamProducer(redis, stream).publish(job(8))
    outages: list[Exception] = [
        *(ConnectionRefusedError(111, "Connect call failed") for _ in range(4)),
        *(Unavailable("the dispatcher cannot be reached") for _ in range(4)),
    ]
    seen: list[int] = []

    async def handler(entry: StreamEntry[OutboundJobEvent]) -> None:
        seen.append(entry.deliveries)
        if outages:
            raise outages.pop(0)

    reader = consumer(redis, stream, handler, min_idle_ms=0, max_deliveries=3)
    for _ in range(9):
        await reader.run_once(block=False)

    # Eight failed deliveries, each put back: never near the three that dead-letter.
    assert seen == [1] * 9
    assert await pending_count(redis, stream) == 0
    assert await dead_letters(redis, stream) == []


async def test_an_entry_that_killed_its_consumers_is_dead_lettered_unhandled(
    redis: aioredis.Redis, stream: str
) -> None:
    entry_id = await StreamProducer(redis, stream).publish(job(9))
    reader = consumer(redis, stream, Recorder(), min_idle_ms=0, max_deliveries=2)
    await reader.ensure_group()
    # Two consumers took it and died before acknowledging.
    await redis.xreadgroup("dispatcher", "crashed-1", {stream: ">"})
    await redis.xclaim(stream, "dispatcher", "crashed-2", 0, [entry_id])
    handler = Recorder()
    reader = consumer(redis, stream, handler, min_idle_ms=0, max_deliveries=2)
    await reader.run_once(block=False)
    assert handler.seen == []
    [fields] = await dead_letters(redis, stream)
    assert fields[b"reason"] == b"too many deliveries"
    assert await pending_count(redis, stream) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {b"type": b"wamesh.events.v1.OutboundJobEvent", b"payload": b"\xff\xff\xff"},
        {b"type": b"wamesh.events.v1.MessageStatusEvent", b"payload": b""},
        {b"payload": b""},
    ],
    ids=["garbage-payload", "wrong-type", "no-type"],
)
async def test_poison_entries_are_dead_lettered_at_once(
    redis: aioredis.Redis, stream: str, fields: dict[bytes, bytes]
) -> None:
    await redis.xadd(stream, fields)  # type: ignore[arg-type]
    handler = Recorder()
    await consumer(redis, stream, handler).run_once(block=False)
    assert handler.seen == []
    assert await pending_count(redis, stream) == 0
    [dead] = await dead_letters(redis, stream)
    assert dead[b"deliveries"] == b"1"
    assert b"OutboundJobEvent" in dead[b"reason"]


async def test_a_handler_can_declare_an_entry_poison(redis: aioredis.Redis, stream: str) -> None:
    await StreamProducer(redis, stream).publish(job(3))
    await consumer(redis, stream, Recorder(poison=True)).run_once(block=False)
    [dead] = await dead_letters(redis, stream)
    assert dead[b"reason"] == b"recipient is not a WhatsApp number"
    assert await pending_count(redis, stream) == 0


def test_encoded_entries_name_their_type() -> None:
    fields = encode_entry(MessageStatusEvent(message_id="m1"))
    assert fields[b"type"] == b"wamesh.events.v1.MessageStatusEvent"
    assert MessageStatusEvent.FromString(fields[b"payload"]).message_id == "m1"


async def test_run_consumes_until_asked_to_stop(redis: aioredis.Redis, stream: str) -> None:
    stop = asyncio.Event()
    seen: list[str] = []

    async def handler(entry: StreamEntry[OutboundJobEvent]) -> None:
        seen.append(entry.message.job_id)
        stop.set()

    reader = consumer(redis, stream, handler)
    task = asyncio.create_task(reader.run(stop))
    await StreamProducer(redis, stream).publish(job(1))
    await asyncio.wait_for(task, timeout=10)
    assert seen == ["job-1"]
    assert await pending_count(redis, stream) == 0


async def test_entries_and_pending_work_survive_a_redis_restart(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis", durable=True)
    server.start()
    stream = "wamesh:{t1}:restart"
    try:
        client = make_redis(server.url)
        producer = StreamProducer(client, stream)
        for n in range(3):
            await producer.publish(job(n))
        crashed = Recorder(failures=100)
        await consumer(client, stream, crashed, name="a", batch_size=1).run_once(block=False)
        assert len(crashed.seen) == 1
        await client.aclose()

        server.stop()
        server.start()

        client = make_redis(server.url)
        survivor = Recorder()
        reader = consumer(client, stream, survivor, name="b", min_idle_ms=0)
        await reader.run_once(block=False)
        await reader.run_once(block=False)
        handled = sorted((e.message.job_id, e.deliveries) for e in survivor.seen)
        assert handled == [("job-0", 2), ("job-1", 1), ("job-2", 1)]
        assert await pending_count(client, stream) == 0
        await client.aclose()
    finally:
        server.stop()


async def test_run_keeps_consuming_after_redis_loses_the_stream_and_its_group(
    redis: aioredis.Redis, stream: str, caplog: pytest.LogCaptureFixture
) -> None:
    stop = asyncio.Event()
    arrived: dict[str, asyncio.Event] = {"job-1": asyncio.Event(), "job-2": asyncio.Event()}

    async def handler(entry: StreamEntry[OutboundJobEvent]) -> None:
        arrived[entry.message.job_id].set()

    reader = consumer(redis, stream, handler)
    task = asyncio.create_task(reader.run(stop))
    producer = StreamProducer(redis, stream)
    try:
        await producer.publish(job(1))
        await until_handled_or_dead(arrived["job-1"], task)
        await redis.flushall()
        await producer.publish(job(2))
        await until_handled_or_dead(arrived["job-2"], task)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    assert await pending_count(redis, stream) == 0
    recreations = [r for r in caplog.records if "group vanished" in r.getMessage()]
    assert len(recreations) == 1
    assert getattr(recreations[0], "stream", None) == stream


async def test_a_group_destroyed_mid_batch_is_created_again_from_the_first_entry(
    redis: aioredis.Redis, stream: str
) -> None:
    producer = StreamProducer(redis, stream)
    for n in range(2):
        await producer.publish(job(n))
    seen: list[str] = []

    async def handler(entry: StreamEntry[OutboundJobEvent]) -> None:
        if not seen:
            # The batch's XACK then finds no group: Redis lost it while entries were in hand.
            await redis.xgroup_destroy(stream, "dispatcher")
        seen.append(entry.message.job_id)

    reader = consumer(redis, stream, handler)
    await reader.run_once(block=False)
    assert seen == ["job-0", "job-1"]
    await producer.publish(job(2))
    for _ in range(3):
        await reader.run_once(block=False)
    # At least once: what the stream still held comes again, then what is new.
    assert seen == ["job-0", "job-1", "job-0", "job-1", "job-2"]
    assert await pending_count(redis, stream) == 0


async def until_handled_or_dead(handled: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Wait for ``handled``; fail at once if the consumer's task ended instead."""
    waiter = asyncio.ensure_future(handled.wait())
    done, _ = await asyncio.wait({waiter, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task in done:
        task.result()  # re-raise what killed it
        pytest.fail("the consumer stopped on its own")
    assert handled.is_set(), "the entry was never handled"


async def five_entries(redis: aioredis.Redis, stream: str) -> list[str]:
    """Entries at 1,000 ms, 2,000 ms ... 5,000 ms after the epoch."""
    return [
        as_text(await redis.xadd(stream, {"n": str(n)}, id=f"{n * 1000}-0")) for n in range(1, 6)
    ]


async def read_and_ack(
    redis: aioredis.Redis, stream: str, group: str, *, read: int, acked: int
) -> None:
    await redis.xgroup_create(stream, group, id="0")
    if read:
        delivered: Any = await redis.xreadgroup(group, "c1", {stream: ">"}, count=read)
        ids = [entry_id for entry_id, _ in delivered[0][1]]
        if acked:
            await redis.xack(stream, group, *ids[:acked])


async def remaining(redis: aioredis.Redis, stream: str) -> list[str]:
    return [entry_id.decode() for entry_id, _ in await stream_entries(redis, stream)]


FAR_FUTURE_MS = 2**50


async def test_trim_keeps_what_the_slowest_group_still_needs(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await five_entries(redis, stream)
    await read_and_ack(redis, stream, "fast", read=5, acked=5)
    # Read three, acknowledged the first: the second is the oldest it still needs.
    await read_and_ack(redis, stream, "slow", read=3, acked=1)

    assert await trim_acknowledged(redis, stream, before_ms=FAR_FUTURE_MS) == 1
    assert await remaining(redis, stream) == ids[1:]


async def test_trim_keeps_the_last_delivered_entry_so_the_stream_never_empties(
    redis: aioredis.Redis, stream: str
) -> None:
    ids = await five_entries(redis, stream)
    await read_and_ack(redis, stream, "done", read=5, acked=5)

    assert await trim_acknowledged(redis, stream, before_ms=FAR_FUTURE_MS) == 4
    assert await remaining(redis, stream) == ids[4:]


async def test_trim_keeps_entries_newer_than_the_cutoff(redis: aioredis.Redis, stream: str) -> None:
    ids = await five_entries(redis, stream)
    await read_and_ack(redis, stream, "done", read=5, acked=5)

    assert await trim_acknowledged(redis, stream, before_ms=3000) == 2
    assert await remaining(redis, stream) == ids[2:]


async def test_trim_leaves_a_stream_no_group_has_read(redis: aioredis.Redis, stream: str) -> None:
    ids = await five_entries(redis, stream)
    assert await trim_acknowledged(redis, stream, before_ms=FAR_FUTURE_MS) == 0
    await read_and_ack(redis, stream, "idle", read=0, acked=0)
    assert await trim_acknowledged(redis, stream, before_ms=FAR_FUTURE_MS) == 0
    assert await remaining(redis, stream) == ids
    assert await trim_acknowledged(redis, f"{stream}:absent", before_ms=FAR_FUTURE_MS) == 0


async def test_a_read_that_would_outwait_the_client_is_refused_at_once(
    redis_url: str, stream: str
) -> None:
    impatient = make_redis(redis_url, socket_timeout_s=0.5)

    def reader(block_ms: int) -> StreamConsumer[OutboundJobEvent]:
        return StreamConsumer(
            impatient,
            stream,
            group="dispatcher",
            consumer="c1",
            message_type=OutboundJobEvent,
            handler=Recorder(),
            block_ms=block_ms,
        )

    try:
        with pytest.raises(ValueError, match=r"block_ms \(1000\) must be below .*500 ms"):
            reader(1000)
        # Below the timeout, an idle read ends as Redis answers it: with nothing, no error.
        assert await reader(250).run_once() == 0
    finally:
        await impatient.aclose()


NOW_MS = 10_000


async def test_the_oldest_unhandled_entry_is_a_pending_one_or_the_first_unread(
    redis: aioredis.Redis, stream: str
) -> None:
    await five_entries(redis, stream)
    # Nothing read yet: the first entry, on the stream since 1,000 ms.
    await read_and_ack(redis, stream, "g", read=0, acked=0)
    assert await oldest_unhandled_age_s(redis, stream, "g", now_ms=NOW_MS) == 9.0
    # Three read, the first acknowledged: the second is still pending.
    delivered: Any = await redis.xreadgroup("g", "c1", {stream: ">"}, count=3)
    await redis.xack(stream, "g", delivered[0][1][0][0])
    assert await oldest_unhandled_age_s(redis, stream, "g", now_ms=NOW_MS) == 8.0
    # The pending ones acknowledged: the fourth, never read, is the oldest left.
    await redis.xack(stream, "g", *[entry_id for entry_id, _ in delivered[0][1][1:]])
    assert await oldest_unhandled_age_s(redis, stream, "g", now_ms=NOW_MS) == 6.0


async def test_nothing_waits_once_everything_is_acknowledged_or_there_is_no_stream(
    redis: aioredis.Redis, stream: str
) -> None:
    assert await oldest_unhandled_age_s(redis, stream, "g", now_ms=NOW_MS) == 0.0
    await five_entries(redis, stream)
    # A group not created yet has everything ahead of it.
    assert await oldest_unhandled_age_s(redis, stream, "g", now_ms=NOW_MS) == 9.0
    await read_and_ack(redis, stream, "g", read=5, acked=5)
    assert await oldest_unhandled_age_s(redis, stream, "g", now_ms=NOW_MS) == 0.0
