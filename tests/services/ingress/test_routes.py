"""The ingress's route cache over the real tenant registry: a route past its TTL is used
while it is refreshed, a route past its grace is looked up first, and a refresh that finds
the number gone drops it. The clock is the test's, so no test waits for a TTL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.clock import Clock
from tests.services.ingress.ingress_testkit import Tenant, create_tenant
from wamesh.tenants.v1 import tenants_pb2 as tenants_pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_ingress.routing import Routes, UnknownNumber
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN

TTL_S = 60.0


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000.0)


@pytest.fixture
async def routes(tenants: GrpcService, clock: Clock) -> AsyncIterator[Routes]:
    # No invalidation listener: these tests are about what the TTL alone does.
    async with make_channel(f"127.0.0.1:{tenants.port}", token=DEV_INTERNAL_TOKEN) as channel:
        yield Routes(channel, timeout_s=4.0, ttl_s=TTL_S, clock=clock)


@pytest.fixture
async def admin(tenants: GrpcService) -> AsyncIterator[Any]:
    async with make_channel(f"127.0.0.1:{tenants.port}", token=DEV_ADMIN_TOKEN) as channel:
        yield tenants_pb2_grpc.TenantRegistryStub(channel)


async def set_limit(admin: Any, tenant: Tenant, per_minute: int) -> None:
    current = await admin.GetTenant(tenants_pb.GetTenantRequest(tenant_id=tenant.id))
    await admin.UpdateTenant(
        tenants_pb.UpdateTenantRequest(
            tenant_id=tenant.id,
            expected_version=current.tenant.version,
            limits=tenants_pb.Limits(inbound_messages_per_minute=per_minute),
        )
    )


async def settled(routes: Routes) -> None:
    """Until the background refresh, if any, has finished."""
    for _ in range(500):
        if not routes._loading:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the refresh never finished")


async def cached_at_20_now_35(routes: Routes, admin: Any, tenants: GrpcService) -> Tenant:
    """A tenant whose route is cached with a limit of 20, while the registry now says 35."""
    tenant = await create_tenant(tenants.port, inbound_per_minute=20)
    assert (await routes.resolve(tenant.number)).inbound_per_minute == 20
    await set_limit(admin, tenant, 35)
    return tenant


async def test_a_route_past_its_ttl_is_used_while_it_is_refreshed(
    routes: Routes, admin: Any, tenants: GrpcService, clock: Clock
) -> None:
    tenant = await cached_at_20_now_35(routes, admin, tenants)

    clock.now += TTL_S  # past the TTL, within its grace
    stale = await routes.resolve(tenant.number)
    assert stale.inbound_per_minute == 20, "served from the cache, not after a lookup"
    await settled(routes)
    assert (await routes.resolve(tenant.number)).inbound_per_minute == 35


async def test_a_route_within_its_ttl_is_not_looked_up(
    routes: Routes, admin: Any, tenants: GrpcService, clock: Clock
) -> None:
    tenant = await cached_at_20_now_35(routes, admin, tenants)

    clock.now += TTL_S * 0.49  # TTLs are spread over their last half only
    assert (await routes.resolve(tenant.number)).inbound_per_minute == 20
    assert not routes._loading


async def test_a_route_past_its_grace_is_looked_up_before_use(
    routes: Routes, admin: Any, tenants: GrpcService, clock: Clock
) -> None:
    tenant = await cached_at_20_now_35(routes, admin, tenants)

    clock.now += 2 * TTL_S
    assert (await routes.resolve(tenant.number)).inbound_per_minute == 35


async def test_a_refresh_that_finds_the_number_gone_drops_the_route(
    routes: Routes, admin: Any, tenants: GrpcService, clock: Clock
) -> None:
    tenant = await create_tenant(tenants.port)
    await routes.resolve(tenant.number)
    await admin.RemoveSenderNumber(
        tenants_pb.RemoveSenderNumberRequest(tenant_id=tenant.id, number=tenant.number)
    )

    clock.now += TTL_S
    assert (await routes.resolve(tenant.number)).tenant_id == tenant.id  # the last it knew
    await settled(routes)
    with pytest.raises(UnknownNumber):
        await routes.resolve(tenant.number)


async def test_a_refresh_that_cannot_reach_the_registry_keeps_the_route(
    routes: Routes, tenants: GrpcService, clock: Clock
) -> None:
    tenant = await create_tenant(tenants.port)
    await routes.resolve(tenant.number)
    await tenants.stop()

    clock.now += TTL_S
    assert (await routes.resolve(tenant.number)).tenant_id == tenant.id
    await settled(routes)
    assert (await routes.resolve(tenant.number)).tenant_id == tenant.id
