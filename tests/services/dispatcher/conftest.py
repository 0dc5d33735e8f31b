from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.service_fixtures import ServiceFixtures
from tests.services.dispatcher.service_testkit import make_settings
from tests.services.tenants.tenants_testkit import make_settings as tenants_settings

# The sandbox's own fixtures, so these tests meet the same Twilio the sandbox's tests do.
from tests.tools.sandbox.conftest import _no_twilio_edge, sandbox
from wamesh.dispatch.v1.dispatch_pb2_grpc import DispatcherStub
from wamesh.tenants.v1.tenants_pb2_grpc import TenantRegistryStub
from wamesh_dispatcher.app import dispatcher_service
from wamesh_dispatcher.settings import DispatcherSettings
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN
from wamesh_tenants.app import tenants_service

__all__ = ["_no_twilio_edge", "sandbox"]

# The dispatcher served in-process on a real socket, over real Postgres and Redis, beside a
# real tenants service (Enqueue asks it for the tenant's sender numbers).
fixtures = ServiceFixtures("dispatcher", dispatcher_service, make_settings, DispatcherStub)
dispatcher_dsn = fixtures.dsn
metrics = fixtures.metrics
service = fixtures.service
connect = fixtures.connect
admin = fixtures.admin
internal = fixtures.internal


@pytest.fixture(scope="module")
def tenants_dsn(new_database: Callable[[str], str]) -> str:
    dsn = new_database("tenants")
    (history,) = [h for h in service_histories() if h.name == "tenants"]
    upgrade_database(dsn, history)
    return dsn


@pytest.fixture
async def tenants(tenants_dsn: str, redis_url: str) -> AsyncIterator[GrpcService]:
    async with tenants_service(
        tenants_settings(tenants_dsn, redis_url), registry=CollectorRegistry()
    ) as server:
        yield server


@pytest.fixture
def tenants_admin(tenants: GrpcService, grpc_channels: Callable[[int, str | None], Any]) -> Any:
    return TenantRegistryStub(grpc_channels(tenants.port, DEV_ADMIN_TOKEN))


@pytest.fixture
def settings(dispatcher_dsn: str, redis_url: str, tenants: GrpcService) -> DispatcherSettings:
    return make_settings(dispatcher_dsn, redis_url, tenants_target=f"127.0.0.1:{tenants.port}")
