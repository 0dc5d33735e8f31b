"""Alembic per service: each service keeps its own history beside its code, for its database.

A service's folder holds ``migrations/`` with ``env.py`` (three lines calling
:func:`run_env`), ``script.py.mako`` and ``versions/``. The runner drives Alembic's command
API over an asyncpg connection, so it works from async code (services, tests) and, through
``asyncio.run``, from the CLI.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData
from sqlalchemy.ext.asyncio import AsyncEngine

from wamesh_kit import registry
from wamesh_kit.db import make_engine


@dataclass(frozen=True)
class MigrationHistory:
    """One service's Alembic script directory."""

    name: str
    script_location: Path

    def config(self, connection: Connection | None = None) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.script_location))
        config.attributes["connection"] = connection
        return config

    def head(self) -> str | None:
        return ScriptDirectory.from_config(self.config()).get_current_head()


def service_histories() -> list[MigrationHistory]:
    """Every installed service that owns a migration history, as its registry entry names it."""
    return [
        MigrationHistory(spec.name, spec.migrations)
        for spec in registry.services().values()
        if spec.migrations is not None
    ]


def run_env(target_metadata: MetaData | None) -> None:
    """The body of every service's ``env.py``: migrate on the connection the runner passed."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through wamesh_kit.migrations, not the alembic CLI")
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run(engine: AsyncEngine, history: MigrationHistory, action: str, revision: str) -> None:
    def apply(connection: Connection) -> None:
        config = history.config(connection)
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(apply)


async def upgrade(engine: AsyncEngine, history: MigrationHistory, revision: str = "head") -> None:
    await _run(engine, history, "upgrade", revision)


async def downgrade(engine: AsyncEngine, history: MigrationHistory, revision: str = "base") -> None:
    await _run(engine, history, "downgrade", revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(read)


def upgrade_database(database_url: str, history: MigrationHistory, revision: str = "head") -> None:
    """Synchronous entry point for the CLI and ``make up``."""

    async def run() -> None:
        engine = make_engine(database_url, pool_size=1)
        try:
            await upgrade(engine, history, revision)
        finally:
            await engine.dispose()

    asyncio.run(run())
