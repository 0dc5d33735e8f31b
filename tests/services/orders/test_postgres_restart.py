"""The orders service's own Postgres restarts under it: the staff API answers UNAVAILABLE
meanwhile, and everything beside it (the bot, the outbox calls, the sweep) carries on once
Postgres is back, with no restart of the service.

A Postgres of its own (the suite's shared one must keep running for the peers and the other
tests)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from tests.service_fixtures import own_postgres as service_postgres
from tests.services.orders.orders_testkit import (
    SETTLE_TIMEOUT_S,
    Mesh,
    unique_customer,
)
from tests.services.tenants.tenants_testkit import assert_refused
from wamesh.dispatch.v1 import dispatch_pb2
from wamesh.orders.v1 import orders_pb2 as pb
from wamesh_kit.localinfra import LocalPostgres
from wamesh_orders.schema import processed
from wamesh_orders.store import OrderStore

TIMES = "\N{MULTIPLICATION SIGN}"


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    with service_postgres(tmp_path, "orders") as postgres:
        yield postgres


@pytest.fixture
def orders_dsn(own_postgres: LocalPostgres) -> str:
    return own_postgres.dsn("orders")


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"inbound_redelivery_s": 0.5, "sweep_interval_s": 0.2}


async def until_logged(caplog: pytest.LogCaptureFixture, *messages: str) -> None:
    """Waits until every loop named has logged that it waits for a dependency."""

    def logged() -> bool:
        seen = {record.getMessage() for record in caplog.records}
        return all(message in seen for message in messages)

    async with asyncio.timeout(SETTLE_TIMEOUT_S):
        # The loops say so only in their logs.
        while not logged():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def until_forgotten(mesh: Mesh, message_id: str) -> None:
    async def remembered() -> bool:
        async with mesh.orders_engine.connect() as connection:
            found = await connection.execute(
                sa.select(processed.c.message_id).where(processed.c.message_id == message_id)
            )
            return found.first() is not None

    async with asyncio.timeout(SETTLE_TIMEOUT_S):
        # The sweep's work is only visible in Postgres.
        while await remembered():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_the_bot_the_outbox_and_the_sweep_carry_on_after_postgres_comes_back(
    mesh: Mesh, own_postgres: LocalPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    shop = await mesh.shop()
    ana = unique_customer()
    assert len(await mesh.say(shop, ana, "hi")) == 2

    await asyncio.to_thread(own_postgres.kill)
    await assert_refused(
        mesh.orders.GetCart(pb.GetCartRequest(tenant_id=shop.tenant_id, customer_number=ana)),
        grpc.StatusCode.UNAVAILABLE,
    )
    during = await mesh.write(shop, ana, "2 x 1")
    await until_logged(
        caplog, "sweep waits for a dependency", "outbox calls waits for a dependency"
    )
    await asyncio.to_thread(own_postgres.start)

    # The bot: the message that came in meanwhile is handled once Postgres is back.
    await mesh.settle([during])
    assert await mesh.new_messages(shop, ana) == [
        f"Added 2 {TIMES} Margherita. Cart total: €50.00. "
        "Send checkout to order, or cart to see your cart."
    ]

    # The outbox loop: a call written now is made without any turn to make it.
    store = OrderStore(mesh.orders_engine)
    async with store.transaction() as tx:
        await tx.enqueue(
            [
                dispatch_pb2.EnqueueRequest(
                    tenant_id=shop.tenant_id,
                    sender_number=shop.sender,
                    recipient_number=ana,
                    body="Your table is ready",
                    idempotency_key=f"test:{ana}",
                )
            ]
        )
    await mesh.settle([during])
    assert await mesh.new_messages(shop, ana) == ["Your table is ready"]

    # The sweep: a message handled longer ago than the retention is forgotten.
    async with mesh.orders_engine.begin() as connection:
        await connection.execute(
            processed.insert().values(
                message_id="SM-long-ago", processed_at=datetime.now(UTC) - timedelta(days=30)
            )
        )
    await until_forgotten(mesh, "SM-long-ago")
