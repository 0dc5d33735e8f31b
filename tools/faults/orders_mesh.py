"""The orders service among its real peers, as separate processes, for its fault test.

The outbound mesh of :mod:`tools.faults.dispatch_mesh` without sending replicas (tenants, the
workers registry, conversations, the sandbox and the intake-only dispatcher replica that takes
the Enqueues), plus orders replicas, each a consumer of the ``inbound`` group under the name
it is started with (its WAMESH_INSTANCE_ID). The caller stands in for the conversation store
and publishes InboundMessageEvents on ``inbound`` itself. Used by
tests/faults/test_orders_faults.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tools.faults.dispatch_mesh import DispatchMesh
from tools.faults.mesh import Service
from wamesh.events.v1 import events_pb2
from wamesh.tenants.v1 import tenants_pb2 as tenants_pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit.db import make_engine
from wamesh_kit.keys import dead_letter_stream
from wamesh_kit.localinfra import free_port
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.redis_client import as_text
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN
from wamesh_kit.streams import StreamProducer
from wamesh_orders.schema import orders, outbox, processed
from wamesh_orders.turns import GROUP, INBOUND_STREAM


@dataclass(frozen=True)
class Shop:
    """A tenant with a bot, one sender number and its staff, as GetTenant returns it."""

    tenant: tenants_pb.Tenant

    @property
    def tenant_id(self) -> str:
        return self.tenant.id

    @property
    def sender(self) -> str:
        return self.tenant.sender_numbers[0].number


# An order's lines as (menu item, quantity, unit price).
Lines = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class PlacedOrder:
    """An order (or cart) as the orders database holds it."""

    id: str
    tenant_id: str
    customer_number: str
    number: int | None
    state: str
    lines: Lines
    method: str
    address: str
    total_minor: int
    created_at: datetime


@dataclass
class OrdersMesh(DispatchMesh):
    """``with OrdersMesh(folder, consumers=("orders-a", "orders-b")) as mesh:`` the mesh with
    those orders replicas, running."""

    replicas: int = 0
    consumers: tuple[str, ...] = ("orders-a",)
    redelivery_s: float = 1.0

    def _start(self) -> None:
        histories = {history.name: history for history in service_histories()}
        upgrade_database(self.infra.postgres.dsn("orders"), histories["orders"])
        super()._start()

    async def _until_ready(self, timeout_s: float = 60) -> None:
        # Called once every other process is started: the replicas start beside them rather
        # than after, which saves their start-up time on a busy machine.
        for name in self.consumers:
            self.start_orders(name)
        await super()._until_ready(timeout_s)
        for name in self.consumers:
            await self.until_serving(name, timeout_s)

    async def until_serving(self, name: str, timeout_s: float = 60) -> None:
        """Until the gRPC server of process ``name`` accepts connections."""
        async with make_channel(self.target(name)) as channel:
            await asyncio.wait_for(channel.channel_ready(), timeout_s)

    def start_orders(self, name: str) -> None:
        """An orders replica consuming ``inbound`` as ``name``, on a free port."""
        self.ports[name] = free_port()
        service = Service(
            "orders",
            {
                **self._common,
                "WAMESH_GRPC_LISTEN": self.target(name),
                "WAMESH_DATABASE_URL": self.infra.postgres.dsn("orders"),
                "WAMESH_INSTANCE_ID": name,
                "WAMESH_INBOUND_REDELIVERY_S": str(self.redelivery_s),
                "WAMESH_TENANTS_TARGET": self.target("tenants"),
                "WAMESH_DISPATCHER_TARGET": self.target("intake"),
                "WAMESH_CONVERSATIONS_TARGET": self.target("conversations"),
            },
            self.log(name),
        )
        self.add(service, name)

    # -- shops

    async def create_shop(self, bot: tenants_pb.BotSettings) -> Shop:
        """A tenant with one of the sandbox's senders and the bot ``bot`` describes."""
        created = await self.create_tenant(1)
        async with make_channel(self.target("tenants"), token=DEV_ADMIN_TOKEN) as channel:
            admin: Any = tenants_pb2_grpc.TenantRegistryStub(channel)
            current = await admin.GetTenant(
                tenants_pb.GetTenantRequest(tenant_id=created.tenant_id)
            )
            updated = await admin.UpdateTenant(
                tenants_pb.UpdateTenantRequest(
                    tenant_id=created.tenant_id,
                    expected_version=current.tenant.version,
                    bot=bot,
                )
            )
        return Shop(updated.tenant)

    # -- what the orders database and the inbound stream hold

    @asynccontextmanager
    async def orders_db(self) -> AsyncIterator[OrdersDb]:
        engine = make_engine(self.infra.postgres.dsn("orders"), pool_size=1)
        try:
            yield OrdersDb(engine)
        finally:
            await engine.dispose()

    @asynccontextmanager
    async def inbound(self) -> AsyncIterator[Inbound]:
        client = aioredis.Redis.from_url(self.infra.redis.url)
        try:
            yield Inbound(client)
        finally:
            await client.aclose()


@dataclass
class OrdersDb:
    engine: AsyncEngine

    async def handled(self, message_ids: Collection[str]) -> set[str]:
        """Those of ``message_ids`` a turn has claimed (and committed)."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                sa.select(processed.c.message_id).where(
                    processed.c.message_id.in_(list(message_ids))
                )
            )
            return {str(row[0]) for row in rows}

    async def every_handled(self) -> list[str]:
        """Every claimed message id, once per row."""
        async with self.engine.connect() as connection:
            return [str(row[0]) for row in await connection.execute(sa.select(processed))]

    async def outbox_left(self) -> int:
        async with self.engine.connect() as connection:
            count = await connection.scalar(sa.select(sa.func.count()).select_from(outbox))
        return int(count or 0)

    async def orders(self) -> list[PlacedOrder]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(sa.select(orders).order_by(orders.c.created_at))
            return [
                PlacedOrder(
                    id=row.id,
                    tenant_id=row.tenant_id,
                    customer_number=row.customer_number,
                    number=row.number,
                    state=row.state,
                    lines=tuple(
                        (line["menu_item_id"], int(line["quantity"]), int(line["unit_price_minor"]))
                        for line in row.lines
                    ),
                    method=row.method,
                    address=row.address,
                    total_minor=int(row.total_minor),
                    created_at=row.created_at,
                )
                for row in rows
            ]


@dataclass
class Inbound:
    """The ``inbound`` stream and the orders group on it."""

    redis: aioredis.Redis
    producer: StreamProducer = field(init=False)

    def __post_init__(self) -> None:
        self.producer = StreamProducer(self.redis, INBOUND_STREAM)

    async def publish(self, event: events_pb2.InboundMessageEvent) -> str:
        return await self.producer.publish(event)

    async def pending(self) -> dict[str, int]:
        """Consumer → entries delivered to it and not yet acknowledged."""
        summary: Any = await self.redis.xpending(INBOUND_STREAM, GROUP)
        return {
            as_text(consumer["name"]): int(consumer["pending"])
            for consumer in summary.get("consumers") or []
        }

    async def dead_letters(self) -> int:
        return int(await self.redis.xlen(dead_letter_stream(INBOUND_STREAM)))
