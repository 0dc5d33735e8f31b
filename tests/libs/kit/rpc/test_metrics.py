from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from tests.libs.kit.rpc.example_server import (
    ADMIN_TOKEN,
    SERVICE_NAME,
    NoteServicer,
    build_service,
    example_settings,
    notes_pb2,
)
from wamesh_kit.rpc.auth import bearer_metadata
from wamesh_kit.rpc.metrics import GrpcServerMetrics, start_metrics_server
from wamesh_kit.rpc.server import GrpcService

ADMIN = bearer_metadata(ADMIN_TOKEN)


@pytest.fixture
async def service(
    servicer: NoteServicer, registry: CollectorRegistry
) -> AsyncIterator[GrpcService]:
    settings = example_settings(metrics_listen="127.0.0.1:0")
    async with build_service(settings, servicer, registry) as service:
        yield service


def handled(registry: CollectorRegistry, method: str, code: str) -> float:
    labels = {"grpc_service": SERVICE_NAME, "grpc_method": method, "grpc_code": code}
    return registry.get_sample_value("wamesh_grpc_server_handled_total", labels) or 0.0


async def eventually(condition: Callable[[], bool]) -> None:
    # An aborted call is counted once the server resumes after sending the status, which
    # may be just after the client has it; wait for that, do not assume an order.
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


async def test_handled_calls_are_counted_by_code(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any], registry: CollectorRegistry
) -> None:
    await stub.GetNote(notes_pb2.GetNoteRequest(tenant_id="t1", note_id="n1"), metadata=ADMIN)
    await stub.GetNote(notes_pb2.GetNoteRequest(tenant_id="t1", note_id="n2"), metadata=ADMIN)
    await rpc_error(
        stub.GetNote(notes_pb2.GetNoteRequest(tenant_id="t1", note_id="n9"), metadata=ADMIN)
    )
    await rpc_error(stub.GetNote(notes_pb2.GetNoteRequest(tenant_id="t1", note_id="n1")))
    await rpc_error(stub.Explode(notes_pb2.ExplodeRequest(kind="plain"), metadata=ADMIN))

    assert handled(registry, "GetNote", "OK") == 2
    await eventually(lambda: handled(registry, "GetNote", "NOT_FOUND") == 1)
    await eventually(lambda: handled(registry, "GetNote", "UNAUTHENTICATED") == 1)
    await eventually(lambda: handled(registry, "Explode", "INTERNAL") == 1)
    assert handled(registry, "GetNote", "PERMISSION_DENIED") == 0
    latency = {"grpc_service": SERVICE_NAME, "grpc_method": "GetNote"}
    await eventually(
        lambda: registry.get_sample_value("wamesh_grpc_server_handling_seconds_count", latency) == 4
    )


async def test_metrics_endpoint_serves_the_registry(
    service: GrpcService, stub: Any, registry: CollectorRegistry
) -> None:
    await stub.GetNote(notes_pb2.GetNoteRequest(tenant_id="t1", note_id="n1"), metadata=ADMIN)
    assert service.metrics_port

    body = await asyncio.to_thread(_get, f"http://127.0.0.1:{service.metrics_port}/metrics")

    expected = (
        'wamesh_grpc_server_handled_total{grpc_code="OK",grpc_method="GetNote",'
        f'grpc_service="{SERVICE_NAME}"}} 1.0'
    )
    assert expected in body
    assert "wamesh_grpc_server_handling_seconds_bucket" in body


async def test_metrics_server_closes_and_frees_its_port() -> None:
    registry = CollectorRegistry()
    Counter("wamesh_probe", "A probe.", registry=registry).inc()
    server = start_metrics_server("127.0.0.1:0", registry)
    url = f"http://127.0.0.1:{server.port}/metrics"
    assert "wamesh_probe_total 1.0" in await asyncio.to_thread(_get, url)

    await asyncio.to_thread(server.close)

    with pytest.raises(urllib.error.URLError, match="refused"):
        await asyncio.to_thread(_get, url)


def test_one_set_of_metrics_per_registry() -> None:
    registry = CollectorRegistry()

    assert GrpcServerMetrics.of(registry) is GrpcServerMetrics.of(registry)
    assert GrpcServerMetrics.of(registry) is not GrpcServerMetrics.of(CollectorRegistry())


async def test_two_servers_can_share_a_registry(registry: CollectorRegistry) -> None:
    for _ in range(2):
        async with build_service(example_settings(), NoteServicer(), registry) as service:
            assert service.port > 0


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
