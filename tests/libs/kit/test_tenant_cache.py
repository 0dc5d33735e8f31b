"""The tenant cache another service keeps, against the real tenants service: it answers from
memory until the entry expires or an invalidation drops it, never remembers a tenant it could
not find, and tells a caller plainly when tenants cannot be reached."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.clock import Clock
from tests.peer_services import tenants, tenants_admin, tenants_dsn
from tests.services.tenants.tenants_testkit import create_tenant, unique_id
from wamesh.tenants.v1 import tenants_pb2
from wamesh.tenants.v1.tenants_pb2_grpc import TenantRegistryStub
from wamesh_kit.errors import NotFound, Unavailable
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_INTERNAL_TOKEN
from wamesh_kit.tenant_cache import TenantCache

__all__ = ["tenants", "tenants_admin", "tenants_dsn"]


@pytest.fixture
def internal(tenants: GrpcService, grpc_channels: Callable[[int, str | None], Any]) -> Any:
    return TenantRegistryStub(grpc_channels(tenants.port, DEV_INTERNAL_TOKEN))


async def rename(admin: Any, tenant_id: str, name: str) -> None:
    current = await admin.GetTenant(tenants_pb2.GetTenantRequest(tenant_id=tenant_id))
    await admin.UpdateTenant(
        tenants_pb2.UpdateTenantRequest(
            tenant_id=tenant_id, expected_version=current.tenant.version, display_name=name
        )
    )


async def test_an_entry_lasts_until_it_expires_or_is_invalidated(
    internal: Any, tenants_admin: Any
) -> None:
    clock = Clock()
    cache = TenantCache(internal, 5.0, ttl_s=30, clock=clock)
    tenant = await create_tenant(tenants_admin, display_name="Casa Pepe")
    assert (await cache.get(tenant.id)).display_name == "Casa Pepe"
    await rename(tenants_admin, tenant.id, "Casa Pepa")
    assert (await cache.get(tenant.id)).display_name == "Casa Pepe"
    clock.now = 31
    assert (await cache.get(tenant.id)).display_name == "Casa Pepa"
    await rename(tenants_admin, tenant.id, "Casa Pepi")
    cache.forget(tenants_pb2.TenantInvalidation(tenant_id=tenant.id))
    assert (await cache.get(tenant.id)).display_name == "Casa Pepi"
    await rename(tenants_admin, tenant.id, "Casa Pepo")
    cache.forget_all()
    assert (await cache.get(tenant.id)).display_name == "Casa Pepo"


async def test_an_unknown_tenant_is_not_remembered(internal: Any, tenants_admin: Any) -> None:
    cache = TenantCache(internal, 5.0)
    tenant_id = unique_id()
    with pytest.raises(NotFound) as refused:
        await cache.get(tenant_id, field="jobs[3].tenant_id")
    assert refused.value.field == "jobs[3].tenant_id"
    await create_tenant(tenants_admin, tenant_id=tenant_id)
    assert (await cache.get(tenant_id)).id == tenant_id


async def test_the_least_recently_used_entry_goes_first(internal: Any, tenants_admin: Any) -> None:
    cache = TenantCache(internal, 5.0, capacity=2)
    first, second, third = [await create_tenant(tenants_admin) for _ in range(3)]
    await cache.get(first.id)
    await cache.get(second.id)
    await cache.get(first.id)  # now the most recent
    await cache.get(third.id)  # evicts the second
    await rename(tenants_admin, first.id, "kept")
    await rename(tenants_admin, second.id, "read again")
    assert (await cache.get(first.id)).display_name != "kept"
    assert (await cache.get(second.id)).display_name == "read again"


async def test_tenants_away_is_unavailable(grpc_channels: Callable[[int, str | None], Any]) -> None:
    nobody = TenantRegistryStub(grpc_channels(1, DEV_INTERNAL_TOKEN))
    with pytest.raises(Unavailable):
        await TenantCache(nobody, 1.0).get("t-anyone")


class HeldAnswers:
    """The real stub, whose GetTenant answers are held back until the test lets them go."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub
        self.answered = asyncio.Event()
        self.release = asyncio.Event()

    async def GetTenant(self, request: Any, **options: Any) -> Any:
        response = await self._stub.GetTenant(request, **options)
        self.answered.set()
        await self.release.wait()
        return response


async def test_what_a_fetch_brings_back_after_an_invalidation_is_not_kept(
    internal: Any, tenants_admin: Any
) -> None:
    held = HeldAnswers(internal)
    cache = TenantCache(held, 5.0, ttl_s=30, clock=Clock())
    tenant = await create_tenant(tenants_admin, display_name="Casa Pepe")
    fetching = asyncio.create_task(cache.get(tenant.id))
    await asyncio.wait_for(held.answered.wait(), 10)
    # The change lands, and its invalidation arrives, while the old answer is on its way.
    await rename(tenants_admin, tenant.id, "Casa Pepa")
    cache.forget(tenants_pb2.TenantInvalidation(tenant_id=tenant.id))
    held.release.set()

    assert (await fetching).display_name == "Casa Pepe"
    assert (await cache.get(tenant.id)).display_name == "Casa Pepa"
