"""Redis work before a webhook is stored: is its MessageSid known, and is the customer over
the inbound rate limit? One script, one round trip.

A MessageSid is ``inflight`` while one request stores it and ``stored`` once it is durable
(stored or spilled). A repeat of a stored one is answered at once; a repeat of an inflight
one is stored again through the conversation store's own idempotency, so it is never
acknowledged on the strength of a request that might still fail.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import Enum

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wamesh.libs.keys import tenant_key

log = logging.getLogger(__name__)

INFLIGHT_TTL_S = 60
RATE_WINDOW_S = 60

_ADMIT = """
local state = redis.call('GET', KEYS[1])
if state then return {state, 0} end
redis.call('SET', KEYS[1], 'inflight', 'EX', ARGV[1])
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return {'new', count}
"""


class Seen(Enum):
    NEW = "new"
    INFLIGHT = "inflight"
    STORED = "stored"
    UNKNOWN = "unknown"  # Redis unavailable: the store's idempotency is all there is


@dataclass(frozen=True)
class Admission:
    seen: Seen
    inbound_this_minute: int


class InboundGuard:
    def __init__(self, redis: aioredis.Redis, *, dedup_ttl_s: int) -> None:
        self._redis = redis
        self._dedup_ttl_s = dedup_ttl_s
        self._admit = redis.register_script(_ADMIT)

    async def admit(self, tenant_id: str, message_sid: str, customer: str) -> Admission:
        window = int(time.time() // RATE_WINDOW_S)
        keys = [
            tenant_key(tenant_id, "dedup", message_sid),
            tenant_key(tenant_id, "inbound-rate", customer, str(window)),
        ]
        try:
            state, count = await self._admit(keys=keys, args=[INFLIGHT_TTL_S, 2 * RATE_WINDOW_S])
        except RedisError as error:
            log.warning("dedup unavailable, relying on the store", extra={"error": str(error)})
            return Admission(Seen.UNKNOWN, 0)
        return Admission(Seen(state.decode() if isinstance(state, bytes) else state), int(count))

    async def mark_stored(self, tenant_id: str, message_sid: str) -> None:
        try:
            await self._redis.set(
                tenant_key(tenant_id, "dedup", message_sid), "stored", ex=self._dedup_ttl_s
            )
        except RedisError as error:
            log.warning("could not mark a MessageSid stored", extra={"error": str(error)})

    async def release(self, tenant_id: str, message_sid: str) -> None:
        """Forget an inflight MessageSid that was not stored, so a retry is processed."""
        try:
            await self._redis.delete(tenant_key(tenant_id, "dedup", message_sid))
        except RedisError as error:
            log.warning("could not release a MessageSid", extra={"error": str(error)})
