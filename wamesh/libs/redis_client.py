"""One way to open Redis: redis-py asyncio over hiredis, with timeouts that fail fast.

hiredis is picked up by redis-py on its own when installed (it is, via ``redis[hiredis]``);
the timeouts keep a dead Redis from hanging a webhook or a worker loop.
"""

from __future__ import annotations

import redis.asyncio as aioredis


def make_redis(
    url: str,
    *,
    client_name: str | None = None,
    max_connections: int = 64,
    socket_timeout_s: float = 5.0,
) -> aioredis.Redis:
    """A pooled client for ``url`` (``redis://`` or ``rediss://``); bytes in, bytes out.

    ``socket_timeout_s`` bounds each command; blocking reads (XREADGROUP BLOCK) must ask
    for less than that.
    """
    return aioredis.Redis.from_url(
        url,
        client_name=client_name,
        max_connections=max_connections,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        health_check_interval=30,
        retry_on_timeout=False,
        decode_responses=False,
    )
