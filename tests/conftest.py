"""Real servers for the whole suite: PostgreSQL and Redis, started once per session.

Set ``WAMESH_TEST_POSTGRES_DSN`` (a server DSN whose user may create databases) and
``WAMESH_TEST_REDIS_URL`` to use servers of your own instead; the Redis one is flushed
between test modules, so give the tests a server of their own.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url

from wamesh_kit.localinfra import LocalPostgres, LocalRedis

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TestServers:
    """Where the suite's servers are; ``postgres``/``redis`` are None for external servers."""

    postgres_dsn: str
    redis_url: str
    postgres: LocalPostgres | None = None
    redis: LocalRedis | None = None

    def database_dsn(self, name: str) -> str:
        return make_url(self.postgres_dsn).set(database=name).render_as_string(hide_password=False)


def _admin_psql(servers: TestServers, sql: str) -> None:
    if servers.postgres is not None:
        servers.postgres.psql(sql)
        return
    import asyncio

    import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no types

    async def run() -> None:
        connection = await asyncpg.connect(servers.postgres_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def servers() -> Iterator[TestServers]:
    external_pg = os.environ.get("WAMESH_TEST_POSTGRES_DSN")
    external_redis = os.environ.get("WAMESH_TEST_REDIS_URL")
    data_dir = REPO_ROOT / ".wamesh" / "test" / uuid.uuid4().hex[:12]
    postgres = None if external_pg else LocalPostgres(data_dir / "postgres", durable=False)
    redis_server = None if external_redis else LocalRedis(data_dir / "redis", durable=False)
    try:
        if postgres is not None:
            postgres.start()
        if redis_server is not None:
            redis_server.start()
        yield TestServers(
            postgres_dsn=external_pg or (postgres.dsn() if postgres else ""),
            redis_url=external_redis or (redis_server.url if redis_server else ""),
            postgres=postgres,
            redis=redis_server,
        )
    finally:
        if redis_server is not None:
            redis_server.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def new_database(
    servers: TestServers, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], str]]:
    """``new_database(label)``: the DSN of a fresh, empty database, dropped after the module."""
    module = re.sub(r"[^a-z0-9]+", "_", request.module.__name__.lower())[-30:]
    created: list[str] = []

    def create(label: str) -> str:
        name = f"t_{module}_{label}_{uuid.uuid4().hex[:6]}"
        _admin_psql(servers, f'CREATE DATABASE "{name}"')
        created.append(name)
        return servers.database_dsn(name)

    yield create
    for name in created:
        _admin_psql(servers, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def database_dsn(new_database: Callable[[str], str]) -> str:
    """A fresh, empty database for this test module."""
    return new_database("db")


@pytest.fixture(scope="module")
def redis_url(servers: TestServers) -> str:
    """The suite's Redis, flushed so this module starts from an empty keyspace."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(servers.redis_url)
    try:
        client.flushall()
    finally:
        client.close()
    return servers.redis_url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis of the test's own, without persistence: the test may stop, restart or flush
    it (a restart loses everything, as one without an append-only file would)."""
    server = LocalRedis(tmp_path / "redis", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def _run_wamesh(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import asyncio
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wamesh_kit",
        *args,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
def wamesh_cli() -> object:
    """``await wamesh_cli(*args, env=...)``: run ``wamesh`` as a process; (exit code, out, err).

    Asynchronous, so a service served in-process by the test keeps answering meanwhile.
    """
    return _run_wamesh


@pytest.fixture
async def grpc_channels() -> AsyncIterator[Callable[[int, str | None], Any]]:
    """``grpc_channels(port, token)``: a channel to 127.0.0.1:port over our own client
    plumbing (deadlines, retries, bearer token); every one is closed after the test."""
    from wamesh_kit.rpc.client import make_channel

    channels: list[Any] = []

    def open_channel(port: int, token: str | None) -> Any:
        channel = make_channel(f"127.0.0.1:{port}", token=token)
        channels.append(channel)
        return channel

    yield open_channel
    for channel in channels:
        await channel.close()
