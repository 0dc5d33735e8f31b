"""Redis work before a webhook is stored: is its MessageSid known, and is the customer over
the inbound rate limit? One script, one round trip.

A MessageSid is marked seen (24 h) before it is stored, and forgotten again if it could be
neither stored nor spilled, so that Twilio's retry of the 503 is processed. A repeat of a
seen MessageSid is answered 200 at once. That never acknowledges a webhook on the strength
of a request that may still fail, because Twilio retries only after its original ended: it
waits 15 s, and ingress gives every call far less (``WAMESH_RPC_TIMEOUT_S``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wamesh.libs.batching import GroupCommit
from wamesh.libs.keys import tenant_key
from wamesh.libs.redis_client import PipelinedScript

log = logging.getLogger(__name__)

RATE_WINDOW_S = 60

_ADMIT = PipelinedScript(
    """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return -1 end
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return count
"""
)


@dataclass(frozen=True)
class Admission:
    duplicate: bool
    inbound_this_minute: int  # 0 when Redis could not count


class InboundGuard:
    def __init__(self, redis: aioredis.Redis, *, dedup_ttl_s: int) -> None:
        self._redis = redis
        self._dedup_ttl_s = dedup_ttl_s
        # Concurrent webhooks share one pipelined round trip.
        self._admissions: GroupCommit[list[str], int] = GroupCommit(self._admit_all)

    async def admit(self, tenant_id: str, message_sid: str, customer: str) -> Admission:
        """Whether the MessageSid was seen before (then it is not counted again)."""
        window = int(time.time() // RATE_WINDOW_S)
        keys = [
            tenant_key(tenant_id, "dedup", message_sid),
            tenant_key(tenant_id, "inbound-rate", customer, str(window)),
        ]
        try:
            count = await self._admissions.submit(keys)
        except RedisError as error:
            # The store is idempotent on the MessageSid: it still stores each one once.
            log.warning("dedup unavailable, relying on the store", extra={"error": str(error)})
            return Admission(duplicate=False, inbound_this_minute=0)
        return Admission(duplicate=count < 0, inbound_this_minute=max(count, 0))

    async def _admit_all(self, batch: list[list[str]]) -> list[int]:
        ttls = (self._dedup_ttl_s, 2 * RATE_WINDOW_S)
        return [int(count) for count in await _ADMIT.run(self._redis, [(k, ttls) for k in batch])]

    async def forget(self, tenant_id: str, message_sid: str) -> None:
        """Forget a MessageSid that was not stored, so that a retry is processed."""
        try:
            await self._redis.delete(tenant_key(tenant_id, "dedup", message_sid))
        except RedisError as error:
            log.warning("could not forget a MessageSid", extra={"error": str(error)})
