"""The inbound guard on the suite's Redis: the mark it keeps for a MessageSid is the one the
rest of wamesh knows by (``wamesh_kit.keys.dedup_key``)."""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from wamesh_ingress.guard import InboundGuard
from wamesh_kit.keys import dedup_key


async def test_a_message_sid_is_marked_under_its_dedup_key(redis_client: aioredis.Redis) -> None:
    guard = InboundGuard(redis_client, dedup_ttl_s=600)
    tenant_id, sid = f"t-{secrets.token_hex(5)}", "SM" + secrets.token_hex(16)

    first = await guard.admit(tenant_id, sid, "+15550000001", timeout_s=5)
    again = await guard.admit(tenant_id, sid, "+15550000001", timeout_s=5)

    assert (first.seen_before, again.seen_before) == (False, True)
    assert (first.inbound_this_minute, again.inbound_this_minute) == (1, 1)
    assert await redis_client.get(dedup_key(tenant_id, sid)) == b"1"
    assert 0 < await redis_client.ttl(dedup_key(tenant_id, sid)) <= 600
