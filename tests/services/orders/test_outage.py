"""The bot when a peer is down: the turn commits once, the ``inbound`` entry stays pending,
and its redelivery (once the peer is back) finishes the job without changing anything twice.

The dispatcher and the tenants registry run here on ports of their own, so a test can stop
them and start them again where the orders service looks for them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from tests.redis_streams import stream_entries
from tests.services.dispatcher.service_testkit import make_settings as dispatcher_settings
from tests.services.orders.orders_testkit import (
    SETTLE_TIMEOUT_S,
    Mesh,
    Shop,
    among_peers,
    unique_customer,
)
from tests.services.tenants.tenants_testkit import make_settings as tenants_settings
from wamesh.events.v1 import events_pb2
from wamesh.orders.v1 import orders_pb2 as pb
from wamesh_dispatcher.app import dispatcher_service
from wamesh_kit.keys import dead_letter_stream
from wamesh_kit.localinfra import free_port
from wamesh_kit.redis_client import as_text
from wamesh_kit.rpc.server import GrpcService
from wamesh_orders.schema import orders, outbox, processed
from wamesh_orders.settings import OrdersSettings
from wamesh_orders.turns import GROUP, INBOUND_STREAM
from wamesh_tenants.app import tenants_service

S = pb.OrderState
TIMES = "\N{MULTIPLICATION SIGN}"


class Peer:
    """A peer service on a port of its own, which a test stops and starts again."""

    def __init__(
        self, port: int, serve: Callable[[], AbstractAsyncContextManager[GrpcService]]
    ) -> None:
        self.port = port
        self._serve = serve
        self._running: AsyncExitStack | None = None

    async def start(self) -> GrpcService:
        assert self._running is None, "already running"
        stack = AsyncExitStack()
        server = await stack.enter_async_context(self._serve())
        self._running = stack
        return server

    async def stop(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await running.aclose()


@pytest.fixture
async def tenants_peer(tenants_dsn: str, redis_url: str) -> AsyncIterator[Peer]:
    port = free_port()
    settings = tenants_settings(tenants_dsn, redis_url, grpc_listen=f"127.0.0.1:{port}")
    peer = Peer(port, lambda: tenants_service(settings, registry=CollectorRegistry()))
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture
async def tenants(tenants_peer: Peer) -> GrpcService:
    """The tenants registry, running; on the port it comes back to after a restart."""
    return await tenants_peer.start()


@pytest.fixture
async def dispatcher(
    dispatcher_dsn: str, redis_url: str, tenants: GrpcService
) -> AsyncIterator[Peer]:
    """The dispatcher's port, with nothing listening until the test starts it."""
    port = free_port()
    settings = dispatcher_settings(
        dispatcher_dsn,
        redis_url,
        tenants_target=f"127.0.0.1:{tenants.port}",
        grpc_listen=f"127.0.0.1:{port}",
    )
    peer = Peer(port, lambda: dispatcher_service(settings, registry=CollectorRegistry()))
    try:
        yield peer
    finally:
        await peer.stop()


@pytest.fixture
def settings(
    orders_dsn: str,
    redis_url: str,
    tenants: GrpcService,
    conversations: GrpcService,
    dispatcher: Peer,
) -> OrdersSettings:
    return among_peers(
        orders_dsn,
        redis_url,
        tenants=tenants.port,
        conversations=conversations.port,
        dispatcher=dispatcher.port,
        inbound_redelivery_s=0.5,
        backlog_interval_s=0.1,
    )


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    try:
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            # Postgres and Redis are polled: neither tells a client about these changes.
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


async def handled(mesh: Mesh, message_ids: list[str]) -> set[str]:
    """Which of the messages the bot has claimed (its turn committed)."""
    async with mesh.orders_engine.connect() as connection:
        rows = await connection.execute(
            sa.select(processed.c.message_id).where(processed.c.message_id.in_(message_ids))
        )
        return {row.message_id for row in rows}


async def all_handled(mesh: Mesh, message_ids: list[str]) -> bool:
    return await handled(mesh, message_ids) == set(message_ids)


async def waiting_keys(mesh: Mesh, tenant_id: str) -> list[str]:
    """The idempotency keys of the tenant's calls still in the outbox, oldest first."""
    async with mesh.orders_engine.connect() as connection:
        rows = await connection.execute(
            sa.select(outbox.c.idempotency_key)
            .where(outbox.c.tenant_id == tenant_id)
            .order_by(outbox.c.seq)
        )
        return [row.idempotency_key for row in rows]


async def entry_ids(redis: aioredis.Redis, message_ids: list[str]) -> dict[str, str]:
    """The ``inbound`` entry that carried each message (message id → entry id), once the
    conversation store has published them all."""
    found: dict[str, str] = {}

    async def published() -> bool:
        for entry_id, fields in await stream_entries(redis, INBOUND_STREAM):
            event = events_pb2.InboundMessageEvent.FromString(fields[b"payload"])
            if event.message_id in message_ids:
                found[event.message_id] = entry_id.decode()
        return len(found) == len(message_ids)

    await until(published, "the messages are on the inbound stream")
    return found


def times_waited(caplog: pytest.LogCaptureFixture, entry_id: str) -> int:
    """How often a delivery of the entry failed because a dependency was away (such
    deliveries do not count toward a dead letter, so Redis's own count stays put)."""
    return sum(
        1
        for record in caplog.records
        if record.getMessage().startswith("stream handler waits for a dependency")
        and getattr(record, "entry_id", None) == entry_id
    )


async def pending(redis: aioredis.Redis) -> dict[str, int]:
    """The ``orders`` group's unacknowledged entries: entry id → times delivered."""
    rows: Any = await redis.xpending_range(INBOUND_STREAM, GROUP, min="-", max="+", count=10_000)
    return {as_text(row["message_id"]): int(row["times_delivered"]) for row in rows}


async def dead_lettered(redis: aioredis.Redis, entries: set[str]) -> set[str]:
    dead = await stream_entries(redis, dead_letter_stream(INBOUND_STREAM))
    return {fields[b"origin_id"].decode() for _, fields in dead} & entries


async def placed(mesh: Mesh, shop: Shop, customer: str) -> list[tuple[Any, ...]]:
    """The customer's orders past the cart as stored: (id, state, version, number)."""
    async with mesh.orders_engine.connect() as connection:
        rows = await connection.execute(
            sa.select(orders.c.id, orders.c.state, orders.c.version, orders.c.number).where(
                orders.c.tenant_id == shop.tenant_id,
                orders.c.customer_number == customer,
                orders.c.state != "draft",
            )
        )
        return [tuple(row) for row in rows]


def backlog_s(metrics: CollectorRegistry) -> float:
    value = metrics.get_sample_value("wamesh_orders_inbound_backlog_seconds")
    assert value is not None, "the backlog gauge is not exported"
    return value


async def test_with_the_dispatcher_down_a_turn_commits_once_and_its_replies_leave_once_it_is_back(
    mesh: Mesh,
    dispatcher: Peer,
    redis_client: aioredis.Redis,
    metrics: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wamesh_kit.streams")
    shop = await mesh.shop()
    ana = unique_customer()
    written: list[str] = []
    for text in ("2 x 1", "checkout", "2", "confirm"):
        # mesh.say would wait for the outbox to empty, which it cannot while nobody listens.
        written.append(await mesh.write(shop, ana, text))
        await until(lambda: all_handled(mesh, written), f"the bot handled {text!r}")
    entries = await entry_ids(redis_client, written)

    # Each turn committed, and none of their entries is acknowledged.
    [(order_id, state, version, number)] = await placed(mesh, shop, ana)
    assert state == "confirmed"
    assert set(entries.values()) <= set(await pending(redis_client))
    keys = await waiting_keys(mesh, shop.tenant_id)
    first, checkout, pickup, _ = written
    assert keys == [
        *(f"reply:{first}:{index}" for index in range(3)),  # greeting, menu, added
        f"reply:{checkout}:0",
        f"reply:{pickup}:0",
        # The confirmation's answer is the order's own notification.
        f"order:{order_id}:confirmed",
        f"order:{order_id}:confirmed:staff:{shop.staff[0]}",
    ]
    assert await mesh.jobs_for(shop, ana) == []

    # Redelivered while the dispatcher is still down: handled again, changes nothing.
    confirm_entry = entries[written[-1]]

    async def redelivered() -> bool:
        return times_waited(caplog, confirm_entry) >= 2

    await until(redelivered, "the confirmation's entry was delivered again")
    assert await placed(mesh, shop, ana) == [(order_id, "confirmed", version, number)]
    assert await waiting_keys(mesh, shop.tenant_id) == keys

    async def backlog_shown() -> bool:
        return backlog_s(metrics) >= 1.0

    # The first entry has waited for over a second: the gauge says so.
    await until(backlog_shown, "the backlog gauge shows the waiting entries")

    await dispatcher.start()

    async def delivered() -> bool:
        waiting = await waiting_keys(mesh, shop.tenant_id)
        return not waiting and not set(entries.values()) & set(await pending(redis_client))

    await until(delivered, "the outbox is empty and every entry acknowledged")

    async def backlog_cleared() -> bool:
        return backlog_s(metrics) == 0.0

    await until(backlog_cleared, "the backlog gauge is back to 0")

    jobs = await mesh.jobs_for(shop, ana)
    to_ana = [key for key in keys if not key.endswith(f":staff:{shop.staff[0]}")]
    assert [job.idempotency_key for job in jobs] == to_ana
    bodies = [job.body for job in jobs]
    assert bodies[0] == "Welcome to Casa Pepe!"
    assert bodies[1].startswith("Menu:\n1. Margherita")
    assert bodies[2:] == [
        f"Added 2 {TIMES} Margherita. Cart total: €50.00. "
        "Send checkout to order, or cart to see your cart.",
        "Delivery or pickup? Reply 1 for delivery or 2 for pickup.",
        f"Your order:\n2 {TIMES} Margherita — €50.00\nTotal: €50.00\nPickup\n"
        "Send confirm to place the order, or cancel to stop.",
        f"Your order #{number} is confirmed.\n2 {TIMES} Margherita — €50.00\nTotal: €50.00\nPickup",
    ]
    (to_staff,) = await mesh.received(shop, shop.staff[0])
    assert to_staff.startswith(f"New order #{number} from {ana}:")
    order = (
        await mesh.orders.GetOrder(pb.GetOrderRequest(tenant_id=shop.tenant_id, order_id=order_id))
    ).order
    assert (order.state, order.version) == (S.ORDER_STATE_CONFIRMED, version)
    assert [(h.from_state, h.to_state) for h in order.history] == [
        (S.ORDER_STATE_DRAFT, S.ORDER_STATE_CONFIRMED)
    ]
    assert await dead_lettered(redis_client, set(entries.values())) == set()

    # Back to normal: the next message is answered at once.
    await mesh.new_messages(shop, ana)
    assert await mesh.say(shop, ana, "status") == [f"Your order #{number} is confirmed."]


async def test_with_the_tenants_registry_down_a_message_waits_and_is_answered_once_it_is_back(
    mesh: Mesh,
    dispatcher: Peer,
    tenants_peer: Peer,
    redis_client: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="wamesh_kit.streams")
    await dispatcher.start()
    shop = await mesh.shop()
    ana = unique_customer()
    await tenants_peer.stop()

    message_id = await mesh.write(shop, ana, "hi")
    entry = (await entry_ids(redis_client, [message_id]))[message_id]

    async def tried_twice() -> bool:
        return times_waited(caplog, entry) >= 2

    # Without the shop's bot settings the bot cannot answer: it claims nothing and says
    # nothing, and the entry waits.
    await until(tried_twice, "the message was delivered twice")
    assert await handled(mesh, [message_id]) == set()
    assert await waiting_keys(mesh, shop.tenant_id) == []
    assert await mesh.jobs_for(shop, ana) == []

    await tenants_peer.start()

    async def answered() -> bool:
        return entry not in await pending(redis_client) and not await waiting_keys(
            mesh, shop.tenant_id
        )

    await until(answered, "the message was handled and acknowledged")
    assert await handled(mesh, [message_id]) == {message_id}
    jobs = await mesh.jobs_for(shop, ana)
    assert [job.idempotency_key for job in jobs] == [
        f"reply:{message_id}:0",
        f"reply:{message_id}:1",
    ]
    assert jobs[0].body == "Welcome to Casa Pepe!"
    assert jobs[1].body.startswith("Menu:\n1. Margherita")
    assert await dead_lettered(redis_client, {entry}) == set()
