"""database_service: one wiring for every database-backed service, in a fixed order."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from sqlalchemy import text

from tests.libs.kit.rpc.example_server import (
    ADMIN_TOKEN,
    INTERNAL_TOKEN,
    JWT_SECRET,
    NoteServicer,
    notes_pb2,
    notes_pb2_grpc,
)
from wamesh_kit.rpc.database_service import Backing, Wiring, database_service
from wamesh_kit.rpc.server import Service
from wamesh_kit.settings import DatabaseServiceSettings


def _settings(database_dsn: str, redis_url: str) -> DatabaseServiceSettings:
    return DatabaseServiceSettings(
        grpc_listen="127.0.0.1:0",
        metrics_listen="",
        shutdown_grace_s=5.0,
        database_url=database_dsn,
        redis_url=redis_url,
        admin_token=SecretStr(ADMIN_TOKEN),
        internal_token=SecretStr(INTERNAL_TOKEN),
        jwt_secret=SecretStr(JWT_SECRET),
    )


def _notes() -> Service:
    return Service(
        notes_pb2.DESCRIPTOR.services_by_name["NoteService"],
        NoteServicer(),
        notes_pb2_grpc.add_NoteServiceServicer_to_server,
    )


async def _serves(port: int) -> bool:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), 1)
        except TimeoutError:
            return False
        return True


async def test_loops_run_on_the_backing_and_stop_after_the_server(
    database_dsn: str, redis_url: str
) -> None:
    seen: list[str] = []
    port: list[int] = []
    backed = asyncio.Event()

    def wire(backing: Backing) -> Wiring:
        async def loop(stop: asyncio.Event) -> None:
            async with backing.engine.connect() as connection:
                seen.append(f"postgres {await connection.scalar(text('SELECT 1'))}")
            seen.append(f"redis {await backing.redis.ping()}")
            backed.set()
            await stop.wait()
            seen.append(f"stopped, server serving: {await _serves(port[0])}")

        return Wiring([_notes()], loops={"probe": loop})

    settings = _settings(database_dsn, redis_url)
    async with database_service(
        settings, wire, client_name="probe", registry=CollectorRegistry()
    ) as server:
        port.append(server.port)
        assert await _serves(server.port)
        await asyncio.wait_for(backed.wait(), 10)

    assert seen == ["postgres 1", "redis True", "stopped, server serving: False"]


async def test_a_wiring_that_fails_starts_nothing_and_raises(
    database_dsn: str, redis_url: str
) -> None:
    def wire(backing: Backing) -> Wiring:
        raise RuntimeError("no servicer today")

    with pytest.raises(RuntimeError, match="no servicer today"):
        async with database_service(_settings(database_dsn, redis_url), wire, client_name="probe"):
            pytest.fail("a service whose wiring failed must not be served")
