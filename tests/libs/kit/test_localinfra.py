"""The harness really starts PostgreSQL and Redis: the suite talks to real servers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from wamesh_kit import registry
from wamesh_kit.db import make_engine
from wamesh_kit.localinfra import LocalInfra, LocalPostgres


async def _scalars(dsn: str, *queries: str) -> list[object]:
    """The first value of each query, over one connection."""
    engine = make_engine(dsn, pool_size=1)
    try:
        async with engine.connect() as connection:
            return [await connection.scalar(text(query)) for query in queries]
    finally:
        await engine.dispose()


async def test_postgres_is_a_real_server(database_dsn: str) -> None:
    version, pid = await _scalars(database_dsn, "SELECT version()", "SELECT pg_backend_pid()")
    assert isinstance(version, str)
    assert version.startswith("PostgreSQL ")
    assert isinstance(pid, int)
    assert pid > 0


async def test_redis_is_a_real_server(redis_client: aioredis.Redis) -> None:
    info = await redis_client.info("server")
    assert info["redis_version"].count(".") == 2
    assert info["process_id"] > 0


async def test_each_module_gets_an_empty_database(database_dsn: str) -> None:
    [tables] = await _scalars(
        database_dsn,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    assert tables == 0


def test_postgres_restarts_on_the_same_port_with_its_data(servers: Any) -> None:
    postgres: LocalPostgres | None = servers.postgres
    if postgres is None:
        pytest.skip("external PostgreSQL: the harness does not own its lifecycle")
    postgres.psql("CREATE TABLE IF NOT EXISTS survives_restart (id int)")
    postgres.psql("INSERT INTO survives_restart VALUES (7)")
    port = postgres.port
    postgres.stop()
    postgres.start()
    assert postgres.port == port
    assert postgres.psql("SELECT sum(id) FROM survives_restart") == "7"
    postgres.psql("DROP TABLE survives_restart")


def test_local_infra_creates_one_database_per_service(tmp_path: Path) -> None:
    with LocalInfra(tmp_path / "infra", durable=False) as infra:
        listed = infra.postgres.psql("SELECT string_agg(datname, ',') FROM pg_database")
        described = infra.describe()
    assert set(registry.databases()) <= set(listed.split(","))
    databases = described["databases"]
    assert isinstance(databases, dict)
    assert databases["tenants"].endswith("/tenants")
    assert str(described["redis_url"]).startswith("redis://127.0.0.1:")
