"""A real mesh for the ingress tests: tenants and conversations over gRPC on real sockets,
their own databases on the suite's Postgres, the suite's Redis, and the ingress app under
uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.services.ingress.ingress_testkit import (
    Databases,
    Tenant,
    conversations_settings,
    create_tenant,
    ingress_client,
    ingress_settings,
    tenants_settings,
)
from wamesh_conversations.app import conversations_service
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.server import GrpcService
from wamesh_tenants.app import tenants_service

HISTORIES = {history.name: history for history in service_histories()}


@pytest.fixture(scope="module")
def databases(new_database: Callable[[str], str]) -> Databases:
    dsns = Databases(new_database("tenants"), new_database("conversations"))
    upgrade_database(dsns.tenants, HISTORIES["tenants"])
    upgrade_database(dsns.conversations, HISTORIES["conversations"])
    return dsns


@pytest.fixture
async def tenants(databases: Databases, redis_url: str) -> AsyncIterator[GrpcService]:
    settings = tenants_settings(databases.tenants, redis_url)
    async with tenants_service(settings, registry=CollectorRegistry()) as server:
        yield server


@pytest.fixture
async def conversations(databases: Databases, redis_url: str) -> AsyncIterator[GrpcService]:
    settings = conversations_settings(databases.conversations, redis_url)
    async with conversations_service(settings, registry=CollectorRegistry()) as server:
        yield server


@pytest.fixture
def ingress_overrides() -> dict[str, Any]:
    """Settings a test module changes (override this fixture)."""
    return {}


@pytest.fixture
async def ingress_registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(
    tenants: GrpcService,
    conversations: GrpcService,
    redis_url: str,
    ingress_overrides: dict[str, Any],
    ingress_registry: CollectorRegistry,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the ingress, which runs over the real tenants and conversations."""
    settings = ingress_settings(tenants, conversations.port, redis_url, **ingress_overrides)
    async with ingress_client(settings, ingress_registry) as http:
        yield http


@pytest.fixture
async def tenant(tenants: GrpcService) -> Tenant:
    return await create_tenant(tenants.port)
