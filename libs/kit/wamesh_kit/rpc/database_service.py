"""The wiring every database-backed gRPC service shares: engine, Redis, server, shutdown.

A service gives :func:`database_service` its settings and a ``wire`` function that builds its
servicers (and any background loops, such as an outbox relay) from the engine and Redis
client; the helper owns everything around that, in one order:

- start: engine (traced when traces are exported), Redis, the server, then the loops;
- stop: the server drains its calls, the loops are told to stop and awaited, then Redis
  and the engine are closed, so nothing in flight loses its connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry
from redis import asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from wamesh_kit.db import make_engine
from wamesh_kit.redis_client import make_redis
from wamesh_kit.rpc.server import GrpcService, Service
from wamesh_kit.settings import DatabaseServiceSettings
from wamesh_kit.telemetry import instrument_engine

BackgroundLoop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
"""Runs until the event is set, then returns."""


@dataclass(frozen=True)
class Backing:
    """What a service's servicers are built on."""

    engine: AsyncEngine
    redis: aioredis.Redis
    registry: CollectorRegistry


@dataclass(frozen=True)
class Wiring:
    """A service's gRPC services, and the loops that run beside them."""

    services: list[Service]
    loops: dict[str, BackgroundLoop] = field(default_factory=dict)


@asynccontextmanager
async def database_service(
    settings: DatabaseServiceSettings,
    wire: Callable[[Backing], Wiring],
    *,
    client_name: str,
    registry: CollectorRegistry = REGISTRY,
    tracer_provider: TracerProvider | None = None,
    redis_socket_timeout_s: float = 5.0,
) -> AsyncIterator[GrpcService]:
    """The service's gRPC server and loops, started; all stopped, pools closed, on exit."""
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    if tracer_provider is None:
        instrument_engine(engine)
    redis = make_redis(
        settings.redis_url,
        client_name=client_name,
        max_connections=settings.redis_max_connections,
        socket_timeout_s=redis_socket_timeout_s,
        pool_timeout_s=settings.redis_pool_timeout_s,
    )
    try:
        wiring = wire(Backing(engine, redis, registry))
        server = GrpcService(
            settings, wiring.services, registry=registry, tracer_provider=tracer_provider
        )
        stop = asyncio.Event()
        loops: list[asyncio.Task[None]] = []
        try:
            await server.start()
            loops = [
                asyncio.create_task(loop(stop), name=name) for name, loop in wiring.loops.items()
            ]
            yield server
        finally:
            await server.stop()
            stop.set()
            await asyncio.gather(*loops)
    finally:
        await redis.aclose()
        await engine.dispose()
