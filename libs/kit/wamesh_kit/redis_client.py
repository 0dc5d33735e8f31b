"""One way to open Redis: redis-py asyncio over hiredis, with timeouts that fail fast and a
pool that waits for a free connection instead of raising.

hiredis is picked up by redis-py on its own when installed (it is, via ``redis[hiredis]``);
the timeouts keep a dead Redis from hanging a webhook or a worker loop. redis-py's default
pool raises "Too many connections" the moment every connection is busy: under a burst
(a failed store batch spilling every webhook of it at once) that failed writes while Redis
itself was fine, so the pool blocks for up to ``pool_timeout_s`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import sha1
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError
from redis.typing import EncodableT, KeyT


def as_text(value: bytes | str) -> str:
    """A reply of this client (bytes, as ``decode_responses`` is off) as text."""
    return value.decode() if isinstance(value, bytes) else value


def make_redis(
    url: str,
    *,
    client_name: str | None = None,
    max_connections: int = 64,
    socket_timeout_s: float = 5.0,
    pool_timeout_s: float | None = None,
) -> aioredis.Redis:
    """A pooled client for ``url`` (``redis://`` or ``rediss://``); bytes in, bytes out.

    ``socket_timeout_s`` bounds each command; blocking reads (XREADGROUP BLOCK) must ask
    for less than that. A command waits up to ``pool_timeout_s`` (default: the socket
    timeout) for one of the ``max_connections`` to be free, then raises ConnectionError.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout_s if pool_timeout_s is None else pool_timeout_s,
        client_name=client_name,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        health_check_interval=30,
        retry_on_timeout=False,
        decode_responses=False,
    )
    return aioredis.Redis.from_pool(pool)


class PipelinedScript:
    """A Lua script whose calls go to Redis as EVALSHAs in one pipeline.

    redis-py's own ``Script`` sends SCRIPT EXISTS before every pipeline, one more round trip
    per batch. Here the script is loaded only when Redis answers NOSCRIPT (it restarted or
    was flushed), and then only the calls that were refused run again: each call ran once.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = sha1(source.encode()).hexdigest()

    async def run(
        self,
        redis: aioredis.Redis,
        calls: Sequence[tuple[Sequence[KeyT], Sequence[EncodableT]]],
    ) -> list[Any]:
        """One result per ``(keys, args)`` call, in order; the first error is raised."""
        results = await self._evalsha(redis, calls)
        refused = [
            index for index, result in enumerate(results) if isinstance(result, NoScriptError)
        ]
        if refused:
            await redis.script_load(self.source)
            again = await self._evalsha(redis, [calls[index] for index in refused])
            for index, result in zip(refused, again, strict=True):
                results[index] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    async def _evalsha(
        self,
        redis: aioredis.Redis,
        calls: Sequence[tuple[Sequence[KeyT], Sequence[EncodableT]]],
    ) -> list[Any]:
        async with redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            return list(await pipe.execute(raise_on_error=False))
