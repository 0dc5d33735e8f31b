"""The Redis route cache behind ResolveNumber, and telling every cache when a tenant changes.

Postgres is the truth. A cached route lives ``ttl_s`` at most and is deleted (and an
invalidation published) after every committed write that touches the tenant. Redis being
down costs speed, never answers: reads fall through to Postgres, and failed invalidations
heal by the TTL.

A reader that missed the cache, read Postgres, and is slow to fill the cache must not put
back a route that a write invalidated meanwhile. Each number has a generation counter that
every invalidation raises; a fill only lands if the generation is still the one the reader
saw before reading Postgres (checked and set atomically in Lua).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp
from redis.exceptions import RedisError

from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh_kit.keys import number_route_generation_key, number_route_key
from wamesh_kit.tenant_invalidations import publish_invalidation
from wamesh_tenants.store import Change

log = logging.getLogger(__name__)

# Longer than any read takes, so a generation cannot vanish between a reader's look and fill.
GENERATION_TTL_S = 24 * 3600

_FILL_IF_GENERATION = """
if (redis.call('GET', KEYS[2]) or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Lookup:
    route: pb.ResolveNumberResponse | None
    generation: bytes | None  # None: Redis unavailable, do not fill


class RouteCache:
    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._fill = redis.register_script(_FILL_IF_GENERATION)

    async def get(self, number: str) -> Lookup:
        try:
            cached, generation = await self._redis.mget(
                number_route_key(number), number_route_generation_key(number)
            )
        except RedisError as error:
            log.warning("route cache unavailable, reading Postgres", extra={"error": str(error)})
            return Lookup(None, None)
        # The client returns bytes (no decode_responses); the stubs cannot know that.
        route = None if cached is None else pb.ResolveNumberResponse.FromString(cast(bytes, cached))
        return Lookup(route, cast(bytes, generation or b""))

    async def put(self, number: str, route: pb.ResolveNumberResponse, generation: bytes) -> bool:
        """Cache ``route`` unless the number was invalidated since ``generation`` was read."""
        try:
            filled = await self._fill(
                keys=[number_route_key(number), number_route_generation_key(number)],
                args=[generation, route.SerializeToString(), self._ttl_s],
            )
        except RedisError as error:
            log.warning("route cache unavailable, not caching", extra={"error": str(error)})
            return False
        return bool(filled)

    async def invalidate(
        self, change: Change, reason: pb.TenantInvalidationReason.ValueType
    ) -> None:
        """Drop the change's cached routes and tell every listener; never raises."""
        if not change.changed:
            return
        now = Timestamp()
        now.GetCurrentTime()
        invalidation = pb.TenantInvalidation(
            tenant_id=change.tenant.id,
            numbers=change.numbers,
            reason=reason,
            tenant_version=change.tenant.version,
            occurred_at=now,
        )
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for number in change.numbers:
                    pipe.incr(number_route_generation_key(number))
                    pipe.expire(number_route_generation_key(number), GENERATION_TTL_S)
                    pipe.delete(number_route_key(number))
                await pipe.execute()
            await publish_invalidation(self._redis, invalidation)
        except RedisError as error:
            log.warning(
                "could not invalidate cached routes; they expire on their own",
                extra={"tenant_id": change.tenant.id, "error": str(error)},
            )
