"""Wiring: settings → engine, Redis, cipher → the TenantRegistry on the shared gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from wamesh.tenants.v1 import tenants_pb2, tenants_pb2_grpc
from wamesh_kit.rpc.database_service import Backing, Wiring, database_service
from wamesh_kit.rpc.server import GrpcService, Service
from wamesh_tenants.routes import RouteCache
from wamesh_tenants.servicer import TenantRegistry
from wamesh_tenants.settings import TenantsSettings
from wamesh_tenants.store import TenantStore

# A Redis that answers slowly must not make ResolveNumber slower than Postgres would be.
REDIS_TIMEOUT_S = 0.5


@asynccontextmanager
async def tenants_service(
    settings: TenantsSettings,
    *,
    registry: CollectorRegistry = REGISTRY,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[GrpcService]:
    """The tenants gRPC server, started; stopped (and its pools closed) on exit."""

    def wire(backing: Backing) -> Wiring:
        servicer = TenantRegistry(
            TenantStore(backing.engine),
            RouteCache(backing.redis, settings.route_cache_ttl_s),
            settings.cipher(),
        )
        return Wiring(
            [
                Service(
                    tenants_pb2.DESCRIPTOR.services_by_name["TenantRegistry"],
                    servicer,
                    tenants_pb2_grpc.add_TenantRegistryServicer_to_server,
                )
            ]
        )

    async with database_service(
        settings,
        wire,
        client_name="tenants",
        registry=registry,
        tracer_provider=tracer_provider,
        redis_socket_timeout_s=REDIS_TIMEOUT_S,
    ) as server:
        yield server
