"""Fixtures of the rpc tests: the example NoteService served in-process on 127.0.0.1:0."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client import CollectorRegistry

from tests.libs.kit.rpc import example_server
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import ServiceSettings


@pytest.fixture
def settings() -> ServiceSettings:
    return example_server.example_settings()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def servicer() -> example_server.NoteServicer:
    return example_server.NoteServicer()


@pytest.fixture
async def service(
    settings: ServiceSettings,
    servicer: example_server.NoteServicer,
    registry: CollectorRegistry,
) -> AsyncIterator[GrpcService]:
    async with example_server.build_service(settings, servicer, registry) as service:
        yield service


@pytest.fixture
async def raw_channel(service: GrpcService) -> AsyncIterator[grpc.aio.Channel]:
    """A bare grpc.aio channel (none of our client plumbing) to the running service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        yield channel


@pytest.fixture
def stub(raw_channel: grpc.aio.Channel) -> Any:
    return example_server.notes_pb2_grpc.NoteServiceStub(raw_channel)


@pytest.fixture
def rpc_error() -> Callable[..., Any]:
    """``await rpc_error(call)``: the AioRpcError a call fails with (the test fails if none)."""

    async def fail(call: Any) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await call
        return failure.value

    return fail


@pytest.fixture
def read_stream() -> Callable[..., Any]:
    """``await read_stream(call)``: the messages of a streaming call and the error ending it."""

    async def read(call: Any) -> tuple[list[Any], grpc.aio.AioRpcError | None]:
        received = []
        try:
            async for message in call:
                received.append(message)
        except grpc.aio.AioRpcError as error:
            return received, error
        return received, None

    return read
