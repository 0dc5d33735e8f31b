"""Invalidation pub/sub on real Redis: delivery, and a cache reset whenever messages may be lost."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from wamesh.tenants.v1.tenants_pb2 import TenantInvalidation
from wamesh_kit.tenant_invalidations import CHANNEL, InvalidationListener, publish_invalidation


async def _next(queue: asyncio.Queue[TenantInvalidation]) -> TenantInvalidation:
    return await asyncio.wait_for(queue.get(), 5)


async def test_listener_receives_what_is_published(redis_client: aioredis.Redis) -> None:
    received: asyncio.Queue[TenantInvalidation] = asyncio.Queue()
    async with InvalidationListener(redis_client, received.put_nowait):
        sent = TenantInvalidation(tenant_id="acme", numbers=["+14155550100"], tenant_version=3)
        assert await publish_invalidation(redis_client, sent) == 1
        assert await _next(received) == sent


async def test_unreadable_messages_are_dropped_not_fatal(redis_client: aioredis.Redis) -> None:
    received: asyncio.Queue[TenantInvalidation] = asyncio.Queue()
    async with InvalidationListener(redis_client, received.put_nowait):
        await redis_client.publish(CHANNEL, b"\xff\xff not a protobuf")
        await publish_invalidation(redis_client, TenantInvalidation(tenant_id="after"))
        assert (await _next(received)).tenant_id == "after"
    assert received.empty()


async def test_a_lost_connection_resets_the_cache_and_resubscribes(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    received: asyncio.Queue[TenantInvalidation] = asyncio.Queue()
    resets: asyncio.Queue[None] = asyncio.Queue()
    listener_client = aioredis.Redis.from_url(redis_url)
    try:
        async with InvalidationListener(
            listener_client, received.put_nowait, lambda: resets.put_nowait(None), retry_s=0.05
        ):
            await asyncio.wait_for(resets.get(), 5)  # the first subscription
            killed = await redis_client.client_kill_filter(_type="pubsub")
            assert killed >= 1
            # What was published while disconnected is lost: the second reset stands for it.
            await asyncio.wait_for(resets.get(), 5)
            await publish_invalidation(redis_client, TenantInvalidation(tenant_id="later"))
            assert (await _next(received)).tenant_id == "later"
    finally:
        await listener_client.aclose()
