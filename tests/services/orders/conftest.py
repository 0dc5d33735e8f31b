"""The orders service served in-process on a real socket, over real Postgres and Redis, among
real peers: tenants (the bot settings), conversations (the inbound stream, opt-outs) and the
dispatcher (taking the replies, not sending them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.peer_services import (
    conversations,
    conversations_admin,
    conversations_dsn,
    conversations_internal,
    dispatcher_dsn,
    dispatcher_intake,
    tenants,
    tenants_admin,
    tenants_dsn,
)
from tests.service_fixtures import ServiceFixtures
from tests.services.orders.orders_testkit import Mesh, among_peers, make_settings
from wamesh.orders.v1.orders_pb2_grpc import OrderServiceStub
from wamesh_kit.db import make_engine
from wamesh_kit.rpc.server import GrpcService
from wamesh_orders.app import orders_service
from wamesh_orders.settings import OrdersSettings

__all__ = [
    "conversations",
    "conversations_admin",
    "conversations_dsn",
    "conversations_internal",
    "dispatcher_dsn",
    "dispatcher_intake",
    "tenants",
    "tenants_admin",
    "tenants_dsn",
]

fixtures = ServiceFixtures("orders", orders_service, make_settings, OrderServiceStub)
orders_dsn = fixtures.dsn
metrics = fixtures.metrics
service = fixtures.service
connect = fixtures.connect
admin = fixtures.admin
internal = fixtures.internal


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """What a test module sets differently from the defaults (e.g. a short cart expiry)."""
    return {}


@pytest.fixture
def settings(
    orders_dsn: str,
    redis_url: str,
    tenants: GrpcService,
    conversations: GrpcService,
    dispatcher_intake: GrpcService,
    settings_overrides: dict[str, Any],
) -> OrdersSettings:
    return among_peers(
        orders_dsn,
        redis_url,
        tenants=tenants.port,
        conversations=conversations.port,
        dispatcher=dispatcher_intake.port,
        **settings_overrides,
    )


@pytest.fixture
async def mesh(
    service: GrpcService,
    admin: Any,
    tenants_admin: Any,
    conversations_internal: Any,
    orders_dsn: str,
    dispatcher_dsn: str,
) -> AsyncIterator[Mesh]:
    orders_engine = make_engine(orders_dsn, pool_size=2)
    dispatcher_engine = make_engine(dispatcher_dsn, pool_size=2)
    try:
        yield Mesh(tenants_admin, conversations_internal, admin, orders_engine, dispatcher_engine)
    finally:
        await orders_engine.dispose()
        await dispatcher_engine.dispose()
