"""OpenTelemetry bootstrap: one tracer provider per process, exported only when asked.

With ``WAMESH_OTLP_ENDPOINT`` set, spans go to that collector over OTLP/gRPC in batches;
without it, new traces are not sampled and no instrumentation is installed: it would slow the
hot paths with nowhere to send its spans. gRPC is instrumented by the interceptors
in ``wamesh_kit.rpc`` (when :func:`tracing_wanted`); the helpers below cover SQLAlchemy, Redis
and ASGI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine
    from starlette.types import ASGIApp

ATTR_TENANT_ID = "wamesh.tenant.id"
"""Set on every span and metric where a tenant is known, under this one name."""

_configured: TracerProvider | None = None
_exporting = False


def configure_tracing(
    service_name: str, *, otlp_endpoint: str | None = None, version: str = "0.1.0"
) -> TracerProvider:
    """Install the global tracer provider once; later calls return the first one."""
    global _configured, _exporting
    if _configured is not None:
        return _configured
    _exporting = bool(otlp_endpoint)
    resource = Resource.create({"service.name": service_name, "service.version": version})
    # With nowhere to export, recording spans is pure cost: new traces are not sampled,
    # though their ids still propagate and label the logs.
    sampler = ParentBased(ALWAYS_ON if otlp_endpoint else ALWAYS_OFF)
    provider = TracerProvider(resource=resource, sampler=sampler)
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    trace.set_tracer_provider(provider)
    _configured = provider
    return provider


def shutdown_tracing() -> None:
    """Flush what is buffered; called on the way out of a service."""
    if _configured is not None:
        _configured.shutdown()


def tracing_wanted(tracer_provider: trace.TracerProvider | None = None) -> bool:
    """Whether to install span-making interceptors: traces are exported, or a caller (a test)
    brought its own provider."""
    return _exporting or tracer_provider is not None


def instrument_engine(engine: AsyncEngine) -> None:
    """Trace every SQL statement of ``engine`` (async engines are instrumented via sync_engine).

    This and the other ``instrument_*`` do nothing unless traces are exported: the
    instrumentation slows a hot path even when its spans go nowhere.
    """
    if not _exporting:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine)


def instrument_redis() -> None:
    """Trace every Redis command of every client in this process."""
    if not _exporting:
        return
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def instrument_asgi(app: ASGIApp) -> ASGIApp:
    """Wrap an ASGI app (ingress) so each HTTP request opens a server span."""
    if not _exporting:
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(app)


def tag_tenant(tenant_id: str) -> str:
    """Names the tenant on the current span (when one is recorded); gives ``tenant_id`` back."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(ATTR_TENANT_ID, tenant_id)
    return tenant_id
