"""Every migration history (the example here, and each service's) goes up to head and down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from wamesh_kit import registry
from wamesh_kit.db import make_engine
from wamesh_kit.migrations import (
    MigrationHistory,
    current_revision,
    downgrade,
    service_histories,
    upgrade,
)

EXAMPLE = MigrationHistory("example", Path(__file__).parent / "example_migrations")
HISTORIES = [EXAMPLE, *service_histories()]


@pytest.fixture
async def engine(database_dsn: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_dsn, pool_size=1)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        return {row[0] for row in rows} - {"alembic_version"}


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.name)
async def test_upgrade_to_head_and_back_to_base(
    engine: AsyncEngine, history: MigrationHistory
) -> None:
    assert await _tables(engine) == set()

    await upgrade(engine, history)
    assert await current_revision(engine) == history.head()
    assert await _tables(engine), f"{history.name}: head creates no table"

    await downgrade(engine, history)
    assert await current_revision(engine) is None
    assert await _tables(engine) == set()


async def test_example_history_applies_its_columns(engine: AsyncEngine) -> None:
    await upgrade(engine, EXAMPLE, "0001")
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO notes (tenant_id, note_id, body) VALUES ('t', 'n', 'b')")
        )
    await upgrade(engine, EXAMPLE)
    async with engine.connect() as connection:
        version = await connection.scalar(text("SELECT version FROM notes WHERE note_id = 'n'"))
    assert version == 1
    await downgrade(engine, EXAMPLE)
    assert await _tables(engine) == set()


def test_service_histories_are_the_registered_services_with_migrations() -> None:
    expected = {
        name: spec.migrations for name, spec in registry.services().items() if spec.migrations
    }
    found = {history.name: history.script_location for history in service_histories()}
    assert found == expected
    assert {"tenants", "conversations"} <= found.keys()
    assert all((location / "env.py").is_file() for location in found.values())
