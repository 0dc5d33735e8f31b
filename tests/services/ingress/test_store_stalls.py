"""Ingress when the store stalls or a first delivery failed half-way: it answers within its
bound (spilling what the store did not take in time), a burst of spills fits a small Redis
pool, a repeat of a MessageSid never stored is stored, and the spill replayer keeps arrival
order even with two of them and a store slower than their lease."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from tests.redis_streams import stream_entries
from tests.services.ingress.ingress_testkit import (
    INTERNAL_TOKEN,
    Tenant,
    ingress_client,
    ingress_settings,
    message_params,
    post_signed,
    serve_ingress,
    stored_messages,
)
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh.events.v1 import events_pb2
from wamesh_conversations.store import INBOUND_STREAM
from wamesh_ingress.spill import SPILL_STREAM, SpillReplayer
from wamesh_kit.keys import dead_letter_stream, dedup_key
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.streams import encode_entry

# Small enough that a test answers fast, large enough for the spill's reserve.
FAST = {"answer_within_s": 1.0, "redis_pool_timeout_s": 0.2, "redis_timeout_s": 0.2}


@pytest.fixture
async def silent_store() -> AsyncIterator[int]:
    """A port that accepts connections and never answers: a frozen store, as gRPC sees it."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
async def empty_spill(redis_client: aioredis.Redis) -> AsyncIterator[aioredis.Redis]:
    """The suite's Redis with the spill stream empty, before the test and after it."""
    await redis_client.delete(SPILL_STREAM)
    yield redis_client
    await redis_client.delete(SPILL_STREAM)


def sid_of(params: list[tuple[str, str]]) -> str:
    return next(v for k, v in params if k == "MessageSid")


async def test_a_store_that_never_answers_is_given_up_on_and_the_webhooks_spilled(
    tenants: GrpcService,
    tenant: Tenant,
    redis_url: str,
    empty_spill: aioredis.Redis,
    silent_store: int,
) -> None:
    """Ten times more webhooks at once than the Redis pool has connections: all spilled."""
    registry = CollectorRegistry()
    settings = ingress_settings(tenants, silent_store, redis_url, redis_max_connections=4, **FAST)
    sent = [message_params(tenant) for _ in range(40)]
    async with ingress_client(settings, registry) as client:
        answers = await asyncio.gather(
            *(post_signed(client, "/twilio/whatsapp", p, tenant.auth_token) for p in sent)
        )

    assert [a.status_code for a in answers] == [200] * 40
    spilled = await stream_entries(empty_spill, SPILL_STREAM)
    sids = {
        pb.RecordInboundRequest.FromString(f[b"payload"]).message.message_sid for _, f in spilled
    }
    assert sids == {sid_of(p) for p in sent}
    assert registry.get_sample_value("wamesh_ingress_store_gave_up_total") == 40
    assert registry.get_sample_value("wamesh_ingress_spilled_total") == 40


async def test_a_repeat_of_a_message_sid_never_stored_is_stored(
    client: httpx.AsyncClient,
    tenant: Tenant,
    conversations: GrpcService,
    redis_client: aioredis.Redis,
) -> None:
    """As an ingress leaves it that counted a webhook and then died before storing it."""
    params = message_params(tenant)
    await redis_client.set(dedup_key(tenant.id, sid_of(params)), "1", ex=3600)

    answer = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)

    assert answer.status_code == 200
    stored = await stored_messages(conversations.port, tenant.id)
    assert [m.provider_sid for m in stored] == [sid_of(params)]


async def test_with_the_spill_refused_too_it_is_503_and_the_retry_is_stored(
    tenants: GrpcService,
    tenant: Tenant,
    conversations: GrpcService,
    redis_url: str,
    redis_client: aioredis.Redis,
    silent_store: int,
) -> None:
    registry = CollectorRegistry()
    params = message_params(tenant)
    await redis_client.set(SPILL_STREAM, "not a stream")  # every XADD to it is refused
    try:
        settings = ingress_settings(tenants, silent_store, redis_url, **FAST)
        async with ingress_client(settings, registry) as client:
            refused = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
    finally:
        await redis_client.delete(SPILL_STREAM)
    assert refused.status_code == 503
    assert registry.get_sample_value("wamesh_ingress_spill_failures_total") == 1

    # Twilio's retry reaches an ingress whose store answers: stored, though Redis knows it.
    settings = ingress_settings(tenants, conversations.port, redis_url, **FAST)
    async with ingress_client(settings) as client:
        retried = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
    assert retried.status_code == 200
    stored = await stored_messages(conversations.port, tenant.id)
    assert sid_of(params) in {m.provider_sid for m in stored}


async def test_two_replayers_and_a_store_slower_than_their_lease_keep_arrival_order(
    tenant: Tenant, conversations: GrpcService, empty_spill: aioredis.Redis
) -> None:
    customers = [f"+1555111{i:04d}" for i in range(4)]
    requests = []
    for index in range(60):
        message = pb.InboundMessage(
            message_sid="SM" + secrets.token_hex(16),
            from_address=f"whatsapp:{customers[index % 4]}",
            to_address=f"whatsapp:{tenant.number}",
            body=f"#{index}",
        )
        requests.append(pb.RecordInboundRequest(tenant_id=tenant.id, message=message))
    for request in requests:
        await empty_spill.xadd(SPILL_STREAM, encode_entry(request))  # type: ignore[arg-type]

    in_store = 0
    most_at_once = 0
    async with make_channel(f"127.0.0.1:{conversations.port}", token=INTERNAL_TOKEN) as channel:
        stub: Any = conversations_pb2_grpc.ConversationStoreStub(channel)

        async def slow_store(request: Message) -> None:
            nonlocal in_store, most_at_once
            in_store += 1
            most_at_once = max(most_at_once, in_store)
            try:
                await asyncio.sleep(random.uniform(0.01, 0.04))
                await stub.RecordInbound(request, timeout=5)
            finally:
                in_store -= 1

        # Each entry takes longer than a tenth of the lease; the whole batch many leases.
        replayers = [
            SpillReplayer(empty_spill, slow_store, lease_ms=300, batch_size=100, idle_s=0.05)
            for _ in range(2)
        ]
        stop = asyncio.Event()
        running = [asyncio.create_task(r.run(stop)) for r in replayers]
        try:
            async with asyncio.timeout(60):
                while True:
                    if not await empty_spill.xlen(SPILL_STREAM):
                        break
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*running)

    assert most_at_once == 1
    published: dict[str, list[str]] = defaultdict(list)
    async with asyncio.timeout(30):
        while sum(map(len, published.values())) < len(requests):
            published.clear()
            for _, fields in await stream_entries(empty_spill, INBOUND_STREAM):
                event = events_pb2.InboundMessageEvent.FromString(fields[b"payload"])
                if event.tenant_id == tenant.id:
                    published[event.customer_number].append(event.content.message_sid)
            await asyncio.sleep(0.1)
    expected: dict[str, list[str]] = defaultdict(list)
    for request in requests:
        customer = request.message.from_address.removeprefix("whatsapp:")
        expected[customer].append(request.message.message_sid)
    assert published == expected


async def test_a_spilled_entry_that_cannot_be_read_is_dead_lettered(
    redis_client: aioredis.Redis,
) -> None:
    await redis_client.delete(SPILL_STREAM, dead_letter_stream(SPILL_STREAM))
    await redis_client.xadd(SPILL_STREAM, {"type": "wamesh.Unknown", "payload": b"\x01"})
    stored: list[Message] = []

    async def store(request: Message) -> None:
        stored.append(request)

    replayer = SpillReplayer(redis_client, store)
    assert await replayer.replay_once() == 1

    assert stored == []
    assert await redis_client.xlen(SPILL_STREAM) == 0
    [(_, dead)] = await stream_entries(redis_client, dead_letter_stream(SPILL_STREAM))
    assert dead[b"type"] == b"wamesh.Unknown"
    assert b"unknown entry type" in dead[b"reason"]


async def test_a_slow_body_is_408_and_a_vanished_client_is_counted(
    tenants: GrpcService,
    conversations: GrpcService,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    settings = ingress_settings(tenants, conversations.port, redis_url, body_timeout_s=0.3)
    head = (
        b"POST /twilio/whatsapp HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
    )
    async with serve_ingress(settings, registry) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + b"MessageSid=SM")
        answer = await asyncio.wait_for(reader.read(), 10)  # read() ends when it closes
        writer.close()

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + b"MessageSid=SM")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        disconnected = {"route": "whatsapp", "outcome": "disconnected"}
        async with asyncio.timeout(10):
            while True:
                if registry.get_sample_value("wamesh_ingress_requests_total", disconnected):
                    break
                await asyncio.sleep(0.02)

    assert answer.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in answer.lower()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_once_the_store_failed_the_next_webhooks_spill_without_trying_it(
    tenants: GrpcService,
    tenant: Tenant,
    redis_url: str,
    empty_spill: aioredis.Redis,
    silent_store: int,
) -> None:
    registry = CollectorRegistry()
    settings = ingress_settings(tenants, silent_store, redis_url, store_retry_after_s=60.0, **FAST)
    async with ingress_client(settings, registry) as client:
        first = await post_signed(
            client, "/twilio/whatsapp", message_params(tenant), tenant.auth_token
        )
        assert registry.get_sample_value("wamesh_ingress_store_breaker_open") == 1
        rest = [
            await post_signed(client, "/twilio/whatsapp", message_params(tenant), tenant.auth_token)
            for _ in range(10)
        ]

    assert [r.status_code for r in [first, *rest]] == [200] * 11
    assert registry.get_sample_value("wamesh_ingress_store_gave_up_total") == 1  # the first only
    assert registry.get_sample_value("wamesh_ingress_spilled_total") == 11
