"""The conversations service served in-process on a real socket, over real Postgres and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.services.conversations.conversations_testkit import make_settings
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh_conversations.app import conversations_service
from wamesh_conversations.settings import ConversationsSettings
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN

HISTORY = next(h for h in service_histories() if h.name == "conversations")


@pytest.fixture(scope="module")
def conversations_dsn(database_dsn: str) -> str:
    upgrade_database(database_dsn, HISTORY)
    return database_dsn


@pytest.fixture
def settings(conversations_dsn: str, redis_url: str) -> ConversationsSettings:
    return make_settings(conversations_dsn, redis_url)


@pytest.fixture
async def service(settings: ConversationsSettings) -> AsyncIterator[GrpcService]:
    async with conversations_service(settings, registry=CollectorRegistry()) as server:
        yield server


@pytest.fixture
def connect(
    service: GrpcService, grpc_channels: Callable[[int, str | None], Any]
) -> Callable[[str | None], Any]:
    """``connect(token)``: a ConversationStore stub over our own client plumbing."""
    return lambda token: conversations_pb2_grpc.ConversationStoreStub(
        grpc_channels(service.port, token)
    )


@pytest.fixture
def internal(connect: Callable[[str | None], Any]) -> Any:
    return connect(DEV_INTERNAL_TOKEN)


@pytest.fixture
def admin(connect: Callable[[str | None], Any]) -> Any:
    return connect(DEV_ADMIN_TOKEN)
