"""The gRPC server every wamesh service runs: one call to wire, one call to serve.

:class:`GrpcService` builds a ``grpc.aio`` server with, from outermost to innermost, the
OpenTelemetry, metrics, auth and error interceptors; serves the standard health service
(SERVING once started, NOT_SERVING when draining) and reflection; and on SIGTERM or SIGINT
stops intake and waits up to ``shutdown_grace_s`` for the calls in flight.

Deadlines: grpc carries the caller's deadline to the servicer as ``context.time_remaining()``.
Pass it on when calling another service (``timeout=context.time_remaining()``) so the whole
chain gives up together; the client factory adds a default deadline only where none is set.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
import grpc.aio
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from wamesh_kit.rpc._interceptors import ServerInterceptor
from wamesh_kit.rpc.auth import Access, Authenticator, AuthInterceptor, declared_access
from wamesh_kit.rpc.errors import ErrorInterceptor
from wamesh_kit.rpc.metrics import MetricsInterceptor, MetricsServer, start_metrics_server
from wamesh_kit.settings import ServiceSettings
from wamesh_kit.telemetry import tracing_wanted

_SERVING = health_pb2.HealthCheckResponse.SERVING
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SERVER_OPTIONS: Sequence[tuple[str, Any]] = (
    # Fail loudly when the port is taken, instead of silently sharing it with another process.
    ("grpc.so_reuseport", 0),
    # Clients (round_robin over a headless Service) only see new replicas when they
    # reconnect: bounded connection age makes them re-resolve as the HPA scales.
    ("grpc.max_connection_age_ms", 5 * 60_000),
    ("grpc.max_connection_age_grace_ms", 30_000),
    # Accept the keepalive pings the client factory sends.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 20_000),
)

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Service:
    """One gRPC service to serve and who may call each of its methods.

    ``add_to_server`` is the generated ``add_<Name>Servicer_to_server``. Access comes from
    :func:`~wamesh_kit.rpc.auth.requires` on the servicer's methods, then from ``access``
    (method name → access), which wins.
    """

    descriptor: ServiceDescriptor
    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    access: Mapping[str, Access] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.descriptor.full_name)

    def policies(self) -> dict[str, Access]:
        """Full method name → access; raises ValueError for a policy on an unknown method."""
        merged = {**declared_access(self.servicer), **self.access}
        methods = set(self.descriptor.methods_by_name)
        unknown = sorted(set(merged) - methods)
        if unknown:
            raise ValueError(f"{self.name} has no method {', '.join(unknown)}")
        undeclared = sorted(methods - set(merged))
        if undeclared:
            _log.warning(
                "methods without an access policy are refused to every caller",
                extra={"grpc_service": self.name, "methods": undeclared},
            )
        return {f"/{self.name}/{method}": access for method, access in merged.items()}


class GrpcService:
    """A grpc.aio server for ``services``, configured from ``settings``.

    ``registry`` receives the RPC metrics and is what ``settings.metrics_listen`` serves
    (an empty ``metrics_listen`` serves none). ``interceptors`` run innermost, after errors.
    Spans go to ``tracer_provider``, by default the global one the telemetry bootstrap set.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        services: Sequence[Service],
        *,
        registry: CollectorRegistry = REGISTRY,
        interceptors: Sequence[ServerInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.services = tuple(services)
        self.registry = registry
        self._extra_interceptors = tuple(interceptors)
        self._options = (*SERVER_OPTIONS, *options)
        self._tracer_provider = tracer_provider
        self._server: grpc.aio.Server | None = None
        self._health: Any = None  # grpc_health ships no type hints
        self._metrics_server: MetricsServer | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when ``grpc_listen`` asked for port 0)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def metrics_port(self) -> int | None:
        return self._metrics_server.port if self._metrics_server else None

    async def start(self) -> int:
        """Binds, starts serving and reports SERVING; returns the bound port.

        A taken port raises (RuntimeError from grpc) instead of being shared.
        """
        if self._server is not None:
            raise RuntimeError("the server is already started")
        server = self._build()
        port = server.add_insecure_port(self.settings.grpc_listen)
        if self.settings.metrics_listen:
            self._metrics_server = start_metrics_server(self.settings.metrics_listen, self.registry)
        try:
            await server.start()
        except BaseException:
            await self._close_metrics_server()
            raise
        self._server, self._port = server, port
        for name in ("", *(service.name for service in self.services)):
            await self._health.set(name, _SERVING)
        _log.info(
            "serving gRPC",
            extra={"grpc_port": port, "grpc_services": [s.name for s in self.services]},
        )
        return port

    async def stop(
        self, grace: float | None = None, *, on_draining: Callable[[], object] | None = None
    ) -> None:
        """Reports NOT_SERVING, refuses new calls and waits up to ``grace`` seconds
        (default ``settings.shutdown_grace_s``) for those in flight, then cancels the rest.

        ``on_draining`` runs once grpc refuses new calls, while the old ones finish. Clients
        learn of the drain from HTTP/2 GOAWAY: their next calls fail UNAVAILABLE (or go to
        another replica), though a call sent in the instant before the GOAWAY arrives is
        ended CANCELLED by grpc core.
        """
        server, self._server = self._server, None
        if server is None:
            return
        await self._health.enter_graceful_shutdown()
        grace = self.settings.shutdown_grace_s if grace is None else grace
        draining = asyncio.ensure_future(server.stop(grace))
        # grpc.aio starts the core shutdown (no new calls from then on; the listener closes
        # a moment later) in the first step of Server.stop(): one turn of the loop runs it,
        # so a synchronous on_draining does not announce a drain that has not begun.
        await asyncio.sleep(0)
        if on_draining is not None:
            on_draining()
        await draining
        await self._close_metrics_server()
        _log.info("gRPC server stopped")

    async def _close_metrics_server(self) -> None:
        metrics_server, self._metrics_server = self._metrics_server, None
        if metrics_server is not None:
            await asyncio.to_thread(metrics_server.close)

    async def serve_until_signal(self, *, on_draining: Callable[[], object] | None = None) -> None:
        """Serves (starting if needed) until SIGTERM or SIGINT, then drains and returns."""
        if self._server is None:
            await self.start()
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, signalled.set)
        try:
            await signalled.wait()
        finally:
            for sig in _STOP_SIGNALS:
                loop.remove_signal_handler(sig)
        _log.info(
            "stop signal received, draining", extra={"grace_s": self.settings.shutdown_grace_s}
        )
        await self.stop(on_draining=on_draining)

    async def __aenter__(self) -> GrpcService:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _build(self) -> grpc.aio.Server:
        policies = {k: v for service in self.services for k, v in service.policies().items()}
        tracing: list[ServerInterceptor] = []
        if tracing_wanted(self._tracer_provider):
            tracing.append(aio_server_interceptor(self._tracer_provider))  # type: ignore[no-untyped-call]
        server = grpc.aio.server(
            interceptors=[
                *tracing,
                MetricsInterceptor(self.registry),
                AuthInterceptor(Authenticator.from_settings(self.settings), policies),
                ErrorInterceptor(),
                *self._extra_interceptors,
            ],
            options=self._options,
        )
        for service in self.services:
            service.add_to_server(service.servicer, server)
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # stubs predate aio
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [service.name for service in self.services]
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        reflection.enable_server_reflection([*names, health_name, reflection.SERVICE_NAME], server)
        return server
