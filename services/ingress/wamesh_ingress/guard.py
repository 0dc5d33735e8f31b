"""Redis work before a webhook is stored: was its MessageSid seen before, and is the customer
over the inbound rate limit? One script, one round trip.

A MessageSid seen before is not counted against the rate again, but it is never answered
from Redis either: every delivery goes to the store (idempotent on the MessageSid) or, with
the store down, to the spill, and is answered 200 only once that succeeded. So a first
delivery that failed half-way (an exhausted pool, a timeout, a crash between steps) leaves
nothing behind that could acknowledge a retry; there is no cleanup to fail. Twilio repeats a
webhook only when its first attempt failed, so repeats are rare and the store's unique
index absorbs them; a Redis "stored" mark would cost a write per webhook to spare them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wamesh_kit.alarms import Alarms
from wamesh_kit.batching import GroupCommit
from wamesh_kit.keys import dedup_key, tenant_key
from wamesh_kit.redis_client import PipelinedScript

log = logging.getLogger(__name__)

RATE_WINDOW_S = 60

# KEYS: the MessageSid's mark, the customer's counter for this minute. Returns {seen, count}:
# a first sight counts; a repeat reads the count (its rate flag matches the first's).
_ADMIT = PipelinedScript(
    """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
local count = redis.call('INCR', KEYS[2])
if count == 1 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return {0, count}
"""
)


@dataclass(frozen=True)
class Admission:
    seen_before: bool  # a repeat: Twilio's retry, or a concurrent duplicate
    inbound_this_minute: int  # 0 when Redis could not count


UNCOUNTED = Admission(seen_before=False, inbound_this_minute=0)


class InboundGuard:
    def __init__(
        self, redis: aioredis.Redis, *, dedup_ttl_s: int, alarms: Alarms | None = None
    ) -> None:
        self._redis = redis
        self._dedup_ttl_s = dedup_ttl_s
        # Concurrent webhooks share one pipelined round trip.
        self._admissions: GroupCommit[list[str], list[int]] = GroupCommit(
            self._admit_all, alarms=alarms
        )

    async def admit(
        self, tenant_id: str, message_sid: str, customer: str, *, timeout_s: float
    ) -> Admission:
        """Whether the MessageSid was seen before (then it is not counted again); with Redis
        failing or slower than ``timeout_s``, an uncounted first sight."""
        window = int(time.time() // RATE_WINDOW_S)
        keys = [
            dedup_key(tenant_id, message_sid),
            tenant_key(tenant_id, "inbound-rate", customer, str(window)),
        ]
        try:
            seen, count = await self._admissions.submit(keys, timeout_s=timeout_s)
        except (RedisError, TimeoutError) as error:
            # The store is idempotent on the MessageSid: it still stores each one once.
            log.warning(
                "dedup unavailable, relying on the store", extra={"error": type(error).__name__}
            )
            return UNCOUNTED
        return Admission(seen_before=bool(seen), inbound_this_minute=count)

    async def _admit_all(self, batch: list[list[str]]) -> list[list[int]]:
        ttls = (self._dedup_ttl_s, 2 * RATE_WINDOW_S)
        answers = await _ADMIT.run(self._redis, [(keys, ttls) for keys in batch])
        return [[int(seen), int(count)] for seen, count in answers]
