"""Tenants as another service sees them: GetTenant, cached for a while, dropped at once when
the tenants service announces a change (pair it with an ``InvalidationListener``)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from wamesh.tenants.v1 import tenants_pb2
from wamesh_kit.errors import NotFound, Unavailable

log = logging.getLogger(__name__)

# A missed invalidation heals within this long.
TENANT_TTL_S = 30.0
# Bounds the memory a flood of distinct tenant ids can take; the least recently used goes.
MAX_CACHED_TENANTS = 10_000


class TenantCache:
    def __init__(
        self,
        stub: Any,
        timeout_s: float,
        *,
        ttl_s: float = TENANT_TTL_S,
        capacity: int = MAX_CACHED_TENANTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._capacity = capacity
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, tenants_pb2.Tenant]] = OrderedDict()
        # Bumped by every invalidation: a fetch that was under way meanwhile may have read the
        # tenant as it was before the change, so what it brings back is used but not kept.
        self._generation = 0

    async def get(self, tenant_id: str, *, field: str = "tenant_id") -> tenants_pb2.Tenant:
        """The tenant; NotFound naming ``field`` for an unknown one (not cached: a tenant
        created a moment ago is found at once), Unavailable when tenants cannot answer."""
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] > self._clock():
            self._cache.move_to_end(tenant_id)
            return cached[1]
        generation = self._generation
        tenant = await self._fetch(tenant_id, field)
        if generation != self._generation:
            return tenant
        self._cache[tenant_id] = (self._clock() + self._ttl_s, tenant)
        self._cache.move_to_end(tenant_id)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return tenant

    def forget(self, invalidation: tenants_pb2.TenantInvalidation) -> None:
        self._generation += 1
        self._cache.pop(invalidation.tenant_id, None)

    def forget_all(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def _fetch(self, tenant_id: str, field: str) -> tenants_pb2.Tenant:
        try:
            response = await self._stub.GetTenant(
                tenants_pb2.GetTenantRequest(tenant_id=tenant_id), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise NotFound("no such tenant", field=field) from None
            log.warning("tenants GetTenant failed: %s %s", error.code().name, error.details())
            raise Unavailable("the tenants service cannot be reached; retry") from None
        tenant: tenants_pb2.Tenant = response.tenant
        return tenant
