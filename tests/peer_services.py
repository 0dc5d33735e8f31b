"""Real peer services a service under test calls, served in-process on real sockets, each on
a database of its own (module scope) and the module's Redis. A conftest imports the ones its
service needs by name, so a reader sees every fixture it has."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.services.conversations.conversations_testkit import (
    make_settings as conversations_settings,
)
from tests.services.dispatcher.service_testkit import make_settings as dispatcher_settings
from tests.services.tenants.tenants_testkit import make_settings as tenants_settings
from wamesh.conversations.v1.conversations_pb2_grpc import ConversationStoreStub
from wamesh.tenants.v1.tenants_pb2_grpc import TenantRegistryStub
from wamesh_conversations.app import conversations_service
from wamesh_dispatcher.app import dispatcher_service
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN
from wamesh_tenants.app import tenants_service


def _migrated(new_database: Callable[[str], str], name: str) -> str:
    dsn = new_database(name)
    (history,) = [h for h in service_histories() if h.name == name]
    upgrade_database(dsn, history)
    return dsn


@pytest.fixture(scope="module")
def tenants_dsn(new_database: Callable[[str], str]) -> str:
    return _migrated(new_database, "tenants")


@pytest.fixture
async def tenants(tenants_dsn: str, redis_url: str) -> AsyncIterator[GrpcService]:
    async with tenants_service(
        tenants_settings(tenants_dsn, redis_url), registry=CollectorRegistry()
    ) as server:
        yield server


@pytest.fixture
def tenants_admin(tenants: GrpcService, grpc_channels: Callable[[int, str | None], Any]) -> Any:
    return TenantRegistryStub(grpc_channels(tenants.port, DEV_ADMIN_TOKEN))


@pytest.fixture(scope="module")
def conversations_dsn(new_database: Callable[[str], str]) -> str:
    return _migrated(new_database, "conversations")


@pytest.fixture
async def conversations(conversations_dsn: str, redis_url: str) -> AsyncIterator[GrpcService]:
    settings = conversations_settings(conversations_dsn, redis_url)
    async with conversations_service(settings, registry=CollectorRegistry()) as server:
        yield server


@pytest.fixture
def conversations_internal(
    conversations: GrpcService, grpc_channels: Callable[[int, str | None], Any]
) -> Any:
    return ConversationStoreStub(grpc_channels(conversations.port, DEV_INTERNAL_TOKEN))


@pytest.fixture
def conversations_admin(
    conversations: GrpcService, grpc_channels: Callable[[int, str | None], Any]
) -> Any:
    return ConversationStoreStub(grpc_channels(conversations.port, DEV_ADMIN_TOKEN))


@pytest.fixture(scope="module")
def dispatcher_dsn(new_database: Callable[[str], str]) -> str:
    return _migrated(new_database, "dispatcher")


@pytest.fixture
async def dispatcher_intake(
    dispatcher_dsn: str, redis_url: str, tenants: GrpcService
) -> AsyncIterator[GrpcService]:
    """The dispatcher taking jobs without sending them: what it queued is in its database."""
    settings = dispatcher_settings(
        dispatcher_dsn, redis_url, tenants_target=f"127.0.0.1:{tenants.port}"
    )
    async with dispatcher_service(settings, registry=CollectorRegistry()) as server:
        yield server
