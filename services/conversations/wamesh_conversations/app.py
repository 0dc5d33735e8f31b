"""Wiring: settings → engine, Redis → the ConversationStore and its outbox relay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from wamesh.conversations.v1 import conversations_pb2, conversations_pb2_grpc
from wamesh_conversations.outbox import OutboxRelay
from wamesh_conversations.servicer import ConversationStoreServicer
from wamesh_conversations.settings import ConversationsSettings
from wamesh_conversations.store import ConversationStore
from wamesh_kit.rpc.database_service import Backing, Wiring, database_service
from wamesh_kit.rpc.server import GrpcService, Service


@asynccontextmanager
async def conversations_service(
    settings: ConversationsSettings,
    *,
    registry: CollectorRegistry = REGISTRY,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[GrpcService]:
    """The conversations gRPC server and its outbox relay, started; both stopped on exit."""

    def wire(backing: Backing) -> Wiring:
        relay = OutboxRelay(
            backing.engine,
            backing.redis,
            batch_size=settings.outbox_batch_size,
            poll_s=settings.outbox_poll_s,
            retention_s=settings.outbox_retention_s,
            heal_check_s=settings.outbox_heal_check_s,
            pending_status_retention_s=settings.pending_status_retention_s,
            stream_retention_s=settings.stream_retention_s,
            registry=backing.registry,
        )
        servicer = ConversationStoreServicer(
            ConversationStore(backing.engine), on_event=relay.notify
        )
        return Wiring(
            [
                Service(
                    conversations_pb2.DESCRIPTOR.services_by_name["ConversationStore"],
                    servicer,
                    conversations_pb2_grpc.add_ConversationStoreServicer_to_server,
                )
            ],
            loops={"outbox-relay": relay.run},
        )

    async with database_service(
        settings,
        wire,
        client_name="conversations",
        registry=registry,
        tracer_provider=tracer_provider,
    ) as server:
        yield server
