"""The outbox: every stored inbound message reaches the `inbound` stream exactly once, in order
per conversation, with its request's trace; Redis down delays events, never loses them."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from tests.redis_streams import stream_entries
from tests.service_fixtures import own_postgres as service_postgres
from tests.services.conversations.conversations_testkit import (
    assert_refused,
    entry_of,
    inbound,
    inbound_events,
    make_settings,
    messages_without_event,
    number,
    tenant,
    wait_for_events,
)
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh.events.v1 import events_pb2
from wamesh_conversations.app import conversations_service
from wamesh_conversations.store import INBOUND_STREAM
from wamesh_kit.localinfra import LocalPostgres, LocalRedis
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_INTERNAL_TOKEN


async def test_an_event_carries_the_message_and_the_trace_of_its_request(
    conversations_dsn: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(conversations_dsn, redis_url)
    async with (
        conversations_service(
            settings, registry=CollectorRegistry(), tracer_provider=provider
        ) as server,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_INTERNAL_TOKEN) as channel,
    ):
        stub = conversations_pb2_grpc.ConversationStoreStub(channel)
        request = inbound(tenant(), number(), number(), rate_limited=True)
        recorded = await stub.RecordInbound(request)
        events = await wait_for_events(redis_client, {recorded.message.id})

    event = events[0]
    assert event.conversation_id == recorded.conversation.id
    assert event.content == request.message
    assert event.rate_limited
    assert event.customer_number == recorded.conversation.customer_number
    entry = entry_of(await stream_entries(redis_client, INBOUND_STREAM), recorded.message.id)
    server_span = next(s for s in exporter.get_finished_spans() if "RecordInbound" in s.name)
    trace_id = entry[b"traceparent"].decode().split("-")[1]
    assert trace_id == f"{server_span.context.trace_id:032x}"


async def test_an_event_outside_any_trace_has_just_its_type_and_payload(
    internal: Any, redis_client: aioredis.Redis
) -> None:
    recorded = await internal.RecordInbound(inbound(tenant(), number(), number()))
    await wait_for_events(redis_client, {recorded.message.id})

    entry = entry_of(await stream_entries(redis_client, INBOUND_STREAM), recorded.message.id)
    assert entry[b"type"] == events_pb2.InboundMessageEvent.DESCRIPTOR.full_name.encode()
    assert set(entry) == {b"type", b"payload"}


async def test_duplicates_publish_nothing_more(internal: Any, redis_client: aioredis.Redis) -> None:
    request = inbound(tenant(), number(), number())
    first = await internal.RecordInbound(request)
    for _ in range(3):
        await internal.RecordInbound(request)
    await wait_for_events(redis_client, {first.message.id})
    await asyncio.sleep(0.3)  # let a wrongly published second event arrive too

    events = [e for e in await inbound_events(redis_client) if e.message_id == first.message.id]
    assert len(events) == 1


async def test_with_redis_down_writes_succeed_and_events_follow_in_order_once(
    conversations_dsn: str, own_redis: LocalRedis
) -> None:
    settings = make_settings(conversations_dsn, own_redis.url)
    tenant_id, sender = tenant(), number()
    customers = [number() for _ in range(5)]
    recorded: list[tuple[str, str]] = []  # (conversation id, message id) in recording order
    async with (
        conversations_service(settings, registry=CollectorRegistry()) as server,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_INTERNAL_TOKEN) as channel,
    ):
        stub = conversations_pb2_grpc.ConversationStoreStub(channel)
        await asyncio.to_thread(own_redis.stop)
        for index in range(100):
            response = await stub.RecordInbound(
                inbound(tenant_id, customers[index % 5], sender, body=f"#{index}")
            )
            recorded.append((response.conversation.id, response.message.id))
        await asyncio.to_thread(own_redis.start)
        redis = aioredis.Redis.from_url(own_redis.url)
        try:
            events = await wait_for_events(redis, {m for _, m in recorded}, timeout_s=30)
        finally:
            await redis.aclose()

    assert len(events) == 100, "an event was published twice"
    published: dict[str, list[str]] = defaultdict(list)
    for event in events:
        published[event.conversation_id].append(event.message_id)
    expected: dict[str, list[str]] = defaultdict(list)
    for conversation_id, message_id in recorded:
        expected[conversation_id].append(message_id)
    assert published == expected


async def test_every_stored_inbound_message_has_exactly_one_event(
    internal: Any, conversations_dsn: str
) -> None:
    recorded = await internal.RecordInbound(inbound(tenant(), number(), number()))
    assert not recorded.duplicate
    assert await messages_without_event(conversations_dsn) == 0


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    with service_postgres(tmp_path, "conversations") as postgres:
        yield postgres


async def test_postgres_down_is_unavailable_and_heals(
    own_postgres: LocalPostgres, redis_url: str, redis_client: aioredis.Redis
) -> None:
    settings = make_settings(own_postgres.dsn("conversations"), redis_url)
    async with (
        conversations_service(settings, registry=CollectorRegistry()) as server,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_INTERNAL_TOKEN) as channel,
    ):
        stub = conversations_pb2_grpc.ConversationStoreStub(channel)
        before = await stub.RecordInbound(inbound(tenant(), number(), number()))
        await asyncio.to_thread(own_postgres.kill)
        refused = inbound(tenant(), number(), number())
        await assert_refused(stub.RecordInbound(refused), grpc.StatusCode.UNAVAILABLE)
        await asyncio.to_thread(own_postgres.start)
        again = await stub.RecordInbound(refused)
        after = await stub.RecordInbound(inbound(tenant(), number(), number()))
        # The relay heals too: events of writes before and after the outage all arrive.
        ids = {before.message.id, again.message.id, after.message.id}
        await wait_for_events(redis_client, ids)

    assert not again.duplicate, "the refused write had been stored after all"
