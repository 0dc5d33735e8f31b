"""Ingress when its dependencies fail: the store down (spill, then replay in arrival order,
each stored once), Redis down (the store's idempotency), both down (503), and floods."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import grpc
import grpc.aio
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tests.redis_streams import stream_entries
from tests.services.ingress.ingress_testkit import (
    Databases,
    Tenant,
    conversations_settings,
    ingress_client,
    ingress_settings,
    message_params,
    post_signed,
    stored_messages,
)
from wamesh.events.v1 import events_pb2
from wamesh_conversations.app import conversations_service
from wamesh_conversations.store import INBOUND_STREAM
from wamesh_kit.localinfra import LocalRedis, free_port
from wamesh_kit.rpc.server import GrpcService

WEBHOOKS = 200


def sid_of(params: list[tuple[str, str]]) -> str:
    return next(v for k, v in params if k == "MessageSid")


async def until_stored(port: int, tenant_id: str, count: int, timeout_s: float = 60) -> list[Any]:
    async def poll() -> list[Any]:
        while True:
            try:
                stored = await stored_messages(port, tenant_id)
            except grpc.aio.AioRpcError as error:
                # The process shares one connection per address, and the ingress's has been
                # backing off while the store was down: it reconnects within seconds.
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                stored = []
            if len(stored) >= count:
                return stored
            await asyncio.sleep(0.2)

    return await asyncio.wait_for(poll(), timeout_s)


async def test_with_the_store_down_webhooks_spill_and_are_replayed_once_in_order(
    tenants: GrpcService,
    tenant: Tenant,
    databases: Databases,
    redis_url: str,
    redis_client: aioredis.Redis,
) -> None:
    port = free_port()
    store_settings = conversations_settings(
        databases.conversations, redis_url, grpc_listen=f"127.0.0.1:{port}"
    )
    customers = [f"+1555000{i:04d}" for i in range(10)]
    sent: list[list[tuple[str, str]]] = [
        message_params(tenant, customers[i % 10], Body=f"#{i}") for i in range(WEBHOOKS)
    ]
    settings = ingress_settings(tenants, port, redis_url)
    async with ingress_client(settings) as client:
        # The store is not running: every webhook must still be acknowledged, and kept.
        for params in sent:
            response = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
            assert response.status_code == 200, response.text
        # Twilio retrying one of them meanwhile changes nothing.
        retry = await post_signed(client, "/twilio/whatsapp", sent[0], tenant.auth_token)
        assert retry.status_code == 200
        async with conversations_service(store_settings, registry=CollectorRegistry()):
            stored = await until_stored(port, tenant.id, WEBHOOKS)
            await asyncio.sleep(0.5)  # a double would arrive now
            stored = await stored_messages(port, tenant.id)

    assert sorted(m.provider_sid for m in stored) == sorted(sid_of(p) for p in sent)
    # Replayed in arrival order: each conversation's events are in the order they were sent.
    entries = await stream_entries(redis_client, INBOUND_STREAM)
    events = [events_pb2.InboundMessageEvent.FromString(f[b"payload"]) for _, f in entries]
    published: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event.tenant_id == tenant.id:
            published[event.customer_number].append(event.content.message_sid)
    expected: dict[str, list[str]] = defaultdict(list)
    for params in sent:
        expected[next(v for k, v in params if k == "From").removeprefix("whatsapp:")].append(
            sid_of(params)
        )
    assert published == expected


@pytest.fixture
async def ingress_on_own_redis(
    tenants: GrpcService, conversations: GrpcService, own_redis: LocalRedis
) -> AsyncIterator[httpx.AsyncClient]:
    settings = ingress_settings(tenants, conversations.port, own_redis.url)
    async with ingress_client(settings) as client:
        yield client


async def test_with_redis_down_duplicates_are_still_stored_once(
    ingress_on_own_redis: httpx.AsyncClient,
    own_redis: LocalRedis,
    tenant: Tenant,
    conversations: GrpcService,
) -> None:
    client = ingress_on_own_redis
    await asyncio.to_thread(own_redis.stop)
    params = message_params(tenant)

    responses = [
        await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token) for _ in range(3)
    ]
    other = await post_signed(client, "/twilio/whatsapp", message_params(tenant), tenant.auth_token)

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert other.status_code == 200
    stored = await stored_messages(conversations.port, tenant.id)
    assert sorted(m.provider_sid for m in stored) == sorted(
        [sid_of(params), next(m.provider_sid for m in stored if m.provider_sid != sid_of(params))]
    )
    assert len(stored) == 2
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["redis"] is False


async def test_with_redis_and_the_store_down_it_is_503_and_a_retry_is_stored(
    tenants: GrpcService,
    tenant: Tenant,
    databases: Databases,
    redis_url: str,
    own_redis: LocalRedis,
) -> None:
    port = free_port()
    settings = ingress_settings(tenants, port, own_redis.url)
    params = message_params(tenant)
    async with ingress_client(settings) as client:
        await asyncio.to_thread(own_redis.stop)
        refused = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
        assert refused.status_code == 503
        # Twilio retries (with #rp=all) once things are back: the retry is not a duplicate.
        await asyncio.to_thread(own_redis.start)
        store_settings = conversations_settings(
            databases.conversations, redis_url, grpc_listen=f"127.0.0.1:{port}"
        )
        async with conversations_service(store_settings, registry=CollectorRegistry()):
            retried = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
            assert retried.status_code == 200, retried.text
            stored = await until_stored(port, tenant.id, 1)
    assert [m.provider_sid for m in stored] == [sid_of(params)]


@pytest.fixture
def ingress_overrides() -> dict[str, Any]:
    return {"per_ip_requests_per_s": 1.0, "per_ip_burst": 5}


async def test_a_flood_from_one_source_is_429_before_any_work(
    client: httpx.AsyncClient, tenant: Tenant, ingress_registry: CollectorRegistry
) -> None:
    body = urlencode(message_params(tenant))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    responses = await asyncio.gather(
        *(client.post("/twilio/whatsapp", content=body, headers=form) for _ in range(50))
    )

    codes = sorted(r.status_code for r in responses)
    assert codes == [403] * 5 + [429] * 45
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 429)
    # Only the 5 admitted requests were looked at at all.
    failures = ingress_registry.get_sample_value("wamesh_ingress_signature_failures_total")
    assert failures == 5
