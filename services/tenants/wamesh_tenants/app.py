"""Wiring: settings → engine, Redis, cipher → the TenantRegistry on the shared gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from wamesh.tenants.v1 import tenants_pb2, tenants_pb2_grpc
from wamesh_kit.db import make_engine
from wamesh_kit.redis_client import make_redis
from wamesh_kit.rpc.server import GrpcService, Service
from wamesh_kit.telemetry import instrument_engine
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
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    if tracer_provider is None:
        instrument_engine(engine)
    redis = make_redis(
        settings.redis_url,
        client_name="tenants",
        max_connections=settings.redis_max_connections,
        socket_timeout_s=REDIS_TIMEOUT_S,
        pool_timeout_s=settings.redis_pool_timeout_s,
    )
    servicer = TenantRegistry(
        TenantStore(engine), RouteCache(redis, settings.route_cache_ttl_s), settings.cipher()
    )
    server = GrpcService(
        settings,
        [
            Service(
                tenants_pb2.DESCRIPTOR.services_by_name["TenantRegistry"],
                servicer,
                tenants_pb2_grpc.add_TenantRegistryServicer_to_server,
            )
        ],
        registry=registry,
        tracer_provider=tracer_provider,
    )
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        await redis.aclose()
        await engine.dispose()
