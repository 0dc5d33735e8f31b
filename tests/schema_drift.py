"""What a service's migrations create, compared with its SQLAlchemy metadata."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData

from wamesh_kit.db import make_engine


async def schema_drift(database_url: str, metadata: MetaData) -> list[Any]:
    """Alembic's differences between the migrated database and ``metadata`` ([] if none)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:

            def compare(sync_connection: Any) -> list[Any]:
                context = MigrationContext.configure(
                    sync_connection, opts={"compare_type": True, "compare_server_default": True}
                )
                # alembic's own bookkeeping table is not part of any service's schema.
                return [
                    diff
                    for diff in compare_metadata(context, metadata)
                    if not (diff[0] == "remove_table" and diff[1].name == "alembic_version")
                ]

            return await connection.run_sync(compare)
    finally:
        await engine.dispose()
