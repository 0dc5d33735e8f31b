"""The orders schema in code and the one its migrations create cannot drift apart."""

from __future__ import annotations

from tests.schema_drift import schema_drift
from wamesh_orders.schema import metadata


async def test_migrations_create_exactly_the_schema_the_code_declares(orders_dsn: str) -> None:
    assert await schema_drift(orders_dsn, metadata) == []
