"""Wiring: settings → engine, Redis → the ConversationStore and its outbox relay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from wamesh.conversations.v1 import conversations_pb2, conversations_pb2_grpc
from wamesh_conversations.outbox import OutboxRelay
from wamesh_conversations.servicer import ConversationStoreServicer
from wamesh_conversations.settings import ConversationsSettings
from wamesh_conversations.store import ConversationStore
from wamesh_kit.db import make_engine
from wamesh_kit.redis_client import make_redis
from wamesh_kit.rpc.server import GrpcService, Service
from wamesh_kit.telemetry import instrument_engine


@asynccontextmanager
async def conversations_service(
    settings: ConversationsSettings,
    *,
    registry: CollectorRegistry = REGISTRY,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[GrpcService]:
    """The conversations gRPC server and its outbox relay, started; both stopped on exit."""
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    if tracer_provider is None:
        instrument_engine(engine)
    redis = make_redis(
        settings.redis_url,
        client_name="conversations",
        max_connections=settings.redis_max_connections,
        pool_timeout_s=settings.redis_pool_timeout_s,
    )
    relay = OutboxRelay(
        engine,
        redis,
        batch_size=settings.outbox_batch_size,
        poll_s=settings.outbox_poll_s,
        retention_s=settings.outbox_retention_s,
        heal_check_s=settings.outbox_heal_check_s,
        registry=registry,
    )
    servicer = ConversationStoreServicer(ConversationStore(engine), on_event=relay.notify)
    server = GrpcService(
        settings,
        [
            Service(
                conversations_pb2.DESCRIPTOR.services_by_name["ConversationStore"],
                servicer,
                conversations_pb2_grpc.add_ConversationStoreServicer_to_server,
            )
        ],
        registry=registry,
        tracer_provider=tracer_provider,
    )
    stop = asyncio.Event()
    relaying = asyncio.create_task(relay.run(stop), name="outbox-relay")
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        stop.set()
        await relaying
        await redis.aclose()
        await engine.dispose()
