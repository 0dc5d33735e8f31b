"""The tenants service served in-process on a real socket, over real Postgres and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.services.tenants.tenants_testkit import make_settings
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN
from wamesh_tenants.app import tenants_service
from wamesh_tenants.settings import TenantsSettings

TENANTS_HISTORY = next(h for h in service_histories() if h.name == "tenants")


@pytest.fixture(scope="module")
def tenants_dsn(database_dsn: str) -> str:
    upgrade_database(database_dsn, TENANTS_HISTORY)
    return database_dsn


@pytest.fixture
def settings(tenants_dsn: str, redis_url: str) -> TenantsSettings:
    return make_settings(tenants_dsn, redis_url)


@pytest.fixture
async def service(settings: TenantsSettings) -> AsyncIterator[GrpcService]:
    async with tenants_service(settings, registry=CollectorRegistry()) as server:
        yield server


@pytest.fixture
def connect(
    service: GrpcService, grpc_channels: Callable[[int, str | None], Any]
) -> Callable[[str | None], Any]:
    """``connect(token)``: a TenantRegistry stub over our own client plumbing."""
    return lambda token: tenants_pb2_grpc.TenantRegistryStub(grpc_channels(service.port, token))


@pytest.fixture
def admin(connect: Callable[[str | None], Any]) -> Any:
    return connect(DEV_ADMIN_TOKEN)


@pytest.fixture
def internal(connect: Callable[[str | None], Any]) -> Any:
    return connect(DEV_INTERNAL_TOKEN)
