"""Tenant cache invalidations over Redis pub/sub: the tenants service publishes, others listen.

Pub/sub is fire-and-forget: a listener that is disconnected misses messages. So a listener
calls ``on_reset`` each time it (re)subscribes, and the caller drops its whole cache then;
cached entries also carry a TTL, so even a lost message heals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from wamesh.tenants.v1.tenants_pb2 import TenantInvalidation
from wamesh_kit.keys import global_key

CHANNEL = global_key("tenants", "invalidations")

log = logging.getLogger(__name__)


async def publish_invalidation(redis: aioredis.Redis, invalidation: TenantInvalidation) -> int:
    """Publish ``invalidation``; returns how many listeners received it."""
    return int(await redis.publish(CHANNEL, invalidation.SerializeToString()))


class InvalidationListener:
    """Calls ``on_invalidation`` for each message; ``on_reset`` whenever messages may be lost."""

    def __init__(
        self,
        redis: aioredis.Redis,
        on_invalidation: Callable[[TenantInvalidation], None],
        on_reset: Callable[[], None] = lambda: None,
        *,
        retry_s: float = 1.0,
    ) -> None:
        self._redis = redis
        self._on_invalidation = on_invalidation
        self._on_reset = on_reset
        self._retry_s = retry_s
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        """Subscribe, returning once the subscription is live (or after the first failure)."""
        self._task = asyncio.create_task(self._run(), name="tenant-invalidations")
        waiter = asyncio.create_task(self._subscribed.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> InvalidationListener:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                log.warning("tenant invalidations: Redis lost, resubscribing")
                self._subscribed.set()  # let start() return; the cache is reset on resubscribe
                await asyncio.sleep(self._retry_s)

    async def _listen(self) -> None:
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(CHANNEL)
            self._on_reset()
            self._subscribed.set()
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                try:
                    invalidation = TenantInvalidation.FromString(message["data"])
                except DecodeError:
                    log.error("tenant invalidations: unreadable message dropped")
                    continue
                self._on_invalidation(invalidation)
