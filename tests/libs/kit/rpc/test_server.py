from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.libs.kit.rpc.example_server import (
    ADMIN_TOKEN,
    INTERNAL_TOKEN,
    JWT_SECRET,
    SERVICE_NAME,
    NoteServicer,
    build_service,
    example_settings,
    notes_pb2,
    notes_pb2_grpc,
)
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.server import GrpcService

REPO_ROOT = Path(__file__).resolve().parents[4]
SERVING = health_pb2.HealthCheckResponse.SERVING
LINE_TIMEOUT_S = 30


@pytest.mark.parametrize("name", ["", SERVICE_NAME])
async def test_health_check_answers_serving(
    service: GrpcService, raw_channel: grpc.aio.Channel, name: str
) -> None:
    health = health_pb2_grpc.HealthStub(raw_channel)

    reply = await health.Check(health_pb2.HealthCheckRequest(service=name))

    assert reply.status == SERVING


async def test_health_watch_streams_through_the_interceptors(
    service: GrpcService, raw_channel: grpc.aio.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(raw_channel)
    call = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))

    first = await call.read()
    call.cancel()

    assert first.status == SERVING


async def test_reflection_lists_the_service(
    service: GrpcService, raw_channel: grpc.aio.Channel
) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(raw_channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    replies = [reply async for reply in reflection.ServerReflectionInfo(iter([request]))]

    names = {s.name for s in replies[0].list_services_response.service}
    assert names == {
        SERVICE_NAME,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


async def test_binds_port_zero_to_a_real_port(service: GrpcService) -> None:
    assert service.port > 0


async def test_a_taken_port_fails_loudly(service: GrpcService) -> None:
    second = build_service(
        example_settings(grpc_listen=f"127.0.0.1:{service.port}"), NoteServicer()
    )

    with pytest.raises(RuntimeError, match="Failed to bind"):
        await second.start()


async def test_stop_reports_not_serving_and_refuses_new_calls() -> None:
    service = build_service(example_settings(), NoteServicer())
    port = await service.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert (await watch.read()).status == SERVING

        stopping = asyncio.ensure_future(service.stop(grace=20))

        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await asyncio.wait_for(_left_ready(channel), LINE_TIMEOUT_S)  # the GOAWAY is in
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        watch.cancel()  # the last call in flight: the drain ends with it
        await asyncio.wait_for(stopping, 10)


async def test_sigterm_drains_the_in_flight_call_then_exits_zero() -> None:
    env = {
        **os.environ,
        "WAMESH_GRPC_LISTEN": "127.0.0.1:0",
        "WAMESH_METRICS_LISTEN": "",
        "WAMESH_SHUTDOWN_GRACE_S": "20",
        "WAMESH_ADMIN_TOKEN": ADMIN_TOKEN,
        "WAMESH_INTERNAL_TOKEN": INTERNAL_TOKEN,
        "WAMESH_JWT_SECRET": JWT_SECRET,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.libs.kit.rpc.example_server",
        stdout=asyncio.subprocess.PIPE,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        port = int((await _line(process)).removeprefix("port "))
        async with make_channel(f"127.0.0.1:{port}", token=ADMIN_TOKEN, default_timeout=20) as ch:
            stub = notes_pb2_grpc.NoteServiceStub(ch)
            slow = asyncio.ensure_future(stub.SlowCall(notes_pb2.SlowCallRequest(duration_ms=1500)))
            assert await _line(process) == "slow-call started"

            process.send_signal(signal.SIGTERM)

            assert await _line(process) == "draining"
            # New calls are refused, on the open connection (once the server's GOAWAY is in:
            # one sent just before races with it and may be CANCELLED by grpc core) as on
            # a new one.
            await asyncio.wait_for(_left_ready(ch), LINE_TIMEOUT_S)
            async with make_channel(f"127.0.0.1:{port}", token=ADMIN_TOKEN) as fresh:
                for channel in (ch, fresh):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await notes_pb2_grpc.NoteServiceStub(channel).WhoAmI(
                            notes_pb2.WhoAmIRequest()
                        )
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            # The in-flight call finishes after the drain began, and succeeds.
            assert await _line(process) == "slow-call finished"
            assert (await slow).slept_ms == 1500
        assert await asyncio.wait_for(process.wait(), LINE_TIMEOUT_S) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _left_ready(channel: grpc.aio.Channel) -> None:
    state = channel.get_state()
    while state == grpc.ChannelConnectivity.READY:
        await channel.wait_for_state_change(state)
        state = channel.get_state()


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), LINE_TIMEOUT_S)
    if not raw:
        pytest.fail(f"the server exited early with code {await process.wait()}")
    return raw.decode().strip()


async def test_server_span_continues_the_client_span(servicer: NoteServicer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with build_service(example_settings(), servicer, tracer_provider=provider) as service:
        channel = make_channel(
            f"127.0.0.1:{service.port}", token=ADMIN_TOKEN, tracer_provider=provider
        )
        async with channel:
            await notes_pb2_grpc.NoteServiceStub(channel).WhoAmI(notes_pb2.WhoAmIRequest())

    spans = {span.kind: span for span in exporter.get_finished_spans()}
    client, server = spans[SpanKind.CLIENT], spans[SpanKind.SERVER]
    assert server.name == f"/{SERVICE_NAME}/WhoAmI"
    assert server.context.trace_id == client.context.trace_id
    assert server.parent is not None
    assert server.parent.span_id == client.context.span_id
