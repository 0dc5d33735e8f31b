"""Spans reach a real OTLP/gRPC receiver when an endpoint is set, and nothing is sent otherwise."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.libs.kit import telemetry_probe

PROBE = Path(__file__).parent / "telemetry_probe.py"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Speaks the OTLP trace service, as an OpenTelemetry Collector does, and keeps the spans."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, bytes]] = []

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((service, span.name, span.trace_id))
        return trace_service_pb2.ExportTraceServiceResponse()


# opentelemetry-proto generates its _grpc module without annotations: the type is ours.
add_collector_to_server: Callable[[Collector, grpc.aio.Server], None] = (
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server
)


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, int]]:
    server = grpc.aio.server()
    servicer = Collector()
    add_collector_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, port
    await server.stop(None)


async def _run_probe(endpoint: str, database_dsn: str, redis_url: str, grpc_port: int) -> None:
    collector_url = f"http://127.0.0.1:{grpc_port}"
    # The SDK's own defaults point at the test's collector too: an exporter made without our
    # endpoint would send there rather than to localhost:4317, where nothing would notice.
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector_url,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROBE),
        endpoint,
        database_dsn,
        redis_url,
        f"127.0.0.1:{grpc_port}",
        env=env,
    )
    assert await asyncio.wait_for(process.wait(), timeout=60) == 0


async def test_spans_are_exported_over_otlp_with_sql_redis_and_grpc(
    collector: tuple[Collector, int], database_dsn: str, redis_url: str
) -> None:
    servicer, port = collector
    await _run_probe(f"http://127.0.0.1:{port}", database_dsn, redis_url, port)

    names = {name for service, name, _ in servicer.spans if service == "telemetry-probe"}
    assert "probe-root" in names
    assert any("SELECT" in name for name in names), names
    assert "PING" in names
    # Exporting installs the gRPC client interceptors on wamesh's channels too.
    assert any(name.endswith("TraceService/Export") for name in names), names
    trace_ids = {trace_id.hex() for *_, trace_id in servicer.spans}
    assert trace_ids == {telemetry_probe.TRACE_ID}, "one trace across them all, the caller's"


async def test_nothing_is_exported_without_an_endpoint(
    collector: tuple[Collector, int], database_dsn: str, redis_url: str
) -> None:
    servicer, port = collector
    await _run_probe("", database_dsn, redis_url, port)
    assert servicer.spans == [], "spans were exported without an endpoint"
