"""Prometheus metrics of a gRPC server, and the ``/metrics`` endpoint a gRPC service serves.

Every metric is registered in a :class:`~prometheus_client.CollectorRegistry` passed in
(the global ``REGISTRY`` by default), so a test can read its own registry in isolation.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import ClassVar
from wsgiref.simple_server import WSGIServer

import grpc
import grpc.aio
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

from wamesh_kit.rpc._interceptors import (
    Context,
    Continuation,
    Handler,
    ServerInterceptor,
    split_method,
    wrap_handler,
)

HANDLED_TOTAL = "wamesh_grpc_server_handled_total"
HANDLING_SECONDS = "wamesh_grpc_server_handling_seconds"


class GrpcServerMetrics:
    """The server-side RPC metrics of one registry; get them with :meth:`of`."""

    _by_registry: ClassVar[weakref.WeakKeyDictionary[CollectorRegistry, GrpcServerMetrics]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            HANDLED_TOTAL,
            "RPCs completed on the server, by status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=registry,
        )
        self.handling_seconds = Histogram(
            HANDLING_SECONDS,
            "Time from the start of an RPC's handler to its status, streaming included.",
            ["grpc_service", "grpc_method"],
            registry=registry,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry = REGISTRY) -> GrpcServerMetrics:
        # One set per registry: a second server in the same process (tests, a CLI) must not
        # register the same names twice, which prometheus_client refuses.
        if registry not in cls._by_registry:
            cls._by_registry[registry] = cls(registry)
        return cls._by_registry[registry]


class MetricsInterceptor(ServerInterceptor):
    """Counts and times every RPC by service, method and final status code."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self._metrics = GrpcServerMetrics.of(registry)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: not counted, so callers cannot mint label values
            return handler
        service, method = split_method(handler_call_details.method)
        return wrap_handler(
            handler, lambda context: _measuring(self._metrics, service, method, context)
        )


@asynccontextmanager
async def _measuring(
    metrics: GrpcServerMetrics, service: str, method: str, context: Context
) -> AsyncIterator[None]:
    started = time.perf_counter()
    code = grpc.StatusCode.UNKNOWN  # what grpc answers for an exception nobody mapped
    try:
        yield
        code = _code_of(context, grpc.StatusCode.OK)
    except grpc.aio.AbortError:
        code = _code_of(context, grpc.StatusCode.UNKNOWN)
        raise
    except (asyncio.CancelledError, GeneratorExit):  # the caller left or its deadline passed
        code = grpc.StatusCode.CANCELLED
        raise
    finally:
        metrics.handled.labels(service, method, code.name).inc()
        metrics.handling_seconds.labels(service, method).observe(time.perf_counter() - started)


def _code_of(context: Context, default: grpc.StatusCode) -> grpc.StatusCode:
    code = context.code()  # None unless the handler aborted or set a code
    return code if isinstance(code, grpc.StatusCode) else default


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP endpoint; :meth:`close` it to free its port and thread."""

    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def close(self) -> None:
        """Stops serving and joins the thread; blocks up to half a second (the poll interval),
        so call it from a thread in async code: ``await asyncio.to_thread(server.close)``."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_metrics_server(listen: str, registry: CollectorRegistry = REGISTRY) -> MetricsServer:
    """Serves ``registry`` at ``http://<listen>/metrics`` from a daemon thread.

    ``listen`` is ``host:port`` (``[::1]:9464`` for IPv6); port 0 picks a free port.
    """
    host, _, port = listen.rpartition(":")
    server, thread = start_http_server(
        int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry
    )
    return MetricsServer(port=server.server_port, _server=server, _thread=thread)
