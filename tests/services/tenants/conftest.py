"""The tenants service served in-process on a real socket, over real Postgres and Redis."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from tenants_testkit import make_settings  # noqa: E402

from wamesh.libs.migrations import service_histories, upgrade_database  # noqa: E402
from wamesh.libs.rpc.server import GrpcService  # noqa: E402
from wamesh.libs.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN  # noqa: E402
from wamesh.services.tenants.app import tenants_service  # noqa: E402
from wamesh.services.tenants.settings import TenantsSettings  # noqa: E402
from wamesh.tenants.v1 import tenants_pb2_grpc  # noqa: E402

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
