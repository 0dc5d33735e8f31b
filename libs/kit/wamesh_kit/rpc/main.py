"""The ``main`` of every gRPC service: logs, traces, then serve until SIGTERM."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

import uvloop

from wamesh_kit.heap import freeze_startup_heap
from wamesh_kit.logs import configure_logging
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import ServiceSettings
from wamesh_kit.telemetry import configure_tracing, instrument_redis, shutdown_tracing

Settings = TypeVar("Settings", bound=ServiceSettings)


def run_grpc_service(
    settings: Settings,
    service: Callable[[Settings], AbstractAsyncContextManager[GrpcService]],
) -> None:
    """Serve ``service(settings)`` in the foreground until SIGTERM or SIGINT drains it."""
    configure_logging(
        settings.service_name, level=settings.log_level, log_format=settings.log_format
    )
    configure_tracing(settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    instrument_redis()

    async def serve() -> None:
        async with service(settings) as server:
            freeze_startup_heap()
            await server.serve_until_signal()

    try:
        # uvloop: the selector loop's Python-level transports are a visible share of a
        # service's CPU under load; grpc.aio runs on any asyncio loop.
        uvloop.run(serve())
    finally:
        shutdown_tracing()
