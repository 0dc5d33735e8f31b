from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from wamesh_kit.db import async_url, make_engine


@pytest.fixture
async def engine(database_dsn: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_dsn, pool_size=2)
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY)"))
        await connection.execute(text("TRUNCATE items"))
    yield engine
    await engine.dispose()


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT count(*) FROM items")) or 0)


def test_plain_dsn_selects_asyncpg() -> None:
    assert async_url("postgresql://u@h:5/db").drivername == "postgresql+asyncpg"
    with pytest.raises(ValueError, match="mysql"):
        async_url("mysql://u@h/db")


async def test_engine_heals_after_a_postgres_restart(engine: AsyncEngine, servers: Any) -> None:
    if servers.postgres is None:
        pytest.skip("external PostgreSQL: the harness cannot restart it")
    assert await _count(engine) == 0  # the pool now holds a live connection
    # In a thread, as in a live service: the event loop keeps running and sees the
    # server close the pooled connection.
    await asyncio.to_thread(servers.postgres.stop)
    await asyncio.to_thread(servers.postgres.start)
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO items VALUES (3)"))
    assert await _count(engine) == 1
