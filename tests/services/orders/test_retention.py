"""Handled inbound messages are forgotten past their retention, oldest first, a batch at a
time; the recent ones, which a redelivery or a replay could still bring back, are kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from wamesh_kit.db import make_engine
from wamesh_orders.schema import processed
from wamesh_orders.store import OrderStore


@pytest.fixture
async def store(orders_dsn: str) -> AsyncIterator[OrderStore]:
    engine = make_engine(orders_dsn, pool_size=1)
    try:
        yield OrderStore(engine)
    finally:
        await engine.dispose()


async def remembered(orders_dsn: str) -> list[str]:
    engine = make_engine(orders_dsn, pool_size=1)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.select(processed.c.message_id).order_by(processed.c.processed_at)
            )
            return [row.message_id for row in rows]
    finally:
        await engine.dispose()


async def test_handled_messages_past_retention_are_forgotten_oldest_first(
    store: OrderStore, orders_dsn: str
) -> None:
    now = datetime.now(UTC)
    async with store.transaction() as tx:
        for days, message_id in ((10, "SM10"), (9, "SM9"), (8, "SM8"), (1, "SM1")):
            tx.now = now - timedelta(days=days)
            assert await tx.claim_message(message_id)
    seven_days_ago = now - timedelta(days=7)

    assert await store.forget_processed(seven_days_ago, limit=2) == 2
    assert await remembered(orders_dsn) == ["SM8", "SM1"]
    assert await store.forget_processed(seven_days_ago, limit=2) == 1
    assert await store.forget_processed(seven_days_ago, limit=2) == 0
    assert await remembered(orders_dsn) == ["SM1"]
