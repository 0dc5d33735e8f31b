"""The orders service among its real peers: a customer writes (conversations records the
message and publishes it on ``inbound``), the bot answers (the dispatcher queues the reply),
and the test reads what the customer would receive, in the order the dispatcher sends it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.services.conversations.conversations_testkit import inbound
from tests.services.tenants.tenants_testkit import create_tenant, unique_number
from wamesh.common.v1 import money_pb2
from wamesh.orders.v1 import orders_pb2 as pb
from wamesh.tenants.v1 import tenants_pb2
from wamesh_dispatcher.schema import jobs
from wamesh_orders.schema import outbox, processed
from wamesh_orders.settings import OrdersSettings

SETTLE_TIMEOUT_S = 20.0

MENU = (
    ("margherita", "Margherita", 2500),
    ("paella", "Paella Valenciana", 4200),
    ("creme", "Crème Brûlée", 900),
)


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> OrdersSettings:
    values: dict[str, Any] = {
        "grpc_listen": "127.0.0.1:0",
        "metrics_listen": "",
        "database_url": database_url,
        "redis_url": redis_url,
        "shutdown_grace_s": 0,
        **overrides,
    }
    return OrdersSettings(**values)


def among_peers(
    orders_dsn: str,
    redis_url: str,
    *,
    tenants: int,
    conversations: int,
    dispatcher: int,
    **overrides: Any,
) -> OrdersSettings:
    """The orders service's settings, its peers on these loopback ports."""
    return make_settings(
        orders_dsn,
        redis_url,
        tenants_target=f"127.0.0.1:{tenants}",
        conversations_target=f"127.0.0.1:{conversations}",
        dispatcher_target=f"127.0.0.1:{dispatcher}",
        **overrides,
    )


def menu_item(item_id: str, name: str, minor: int, currency: str = "EUR") -> tenants_pb2.MenuItem:
    units, cents = divmod(minor, 100)
    return tenants_pb2.MenuItem(
        id=item_id,
        name=name,
        price=money_pb2.Money(currency_code=currency, units=units, nanos=cents * 10_000_000),
        available=True,
    )


@dataclass(frozen=True)
class Shop:
    tenant_id: str
    sender: str
    staff: tuple[str, ...]


@dataclass
class Mesh:
    """Drives the orders service the way customers and staff do."""

    tenants_admin: Any
    conversations: Any
    orders: Any
    orders_engine: AsyncEngine
    dispatcher_engine: AsyncEngine
    seen: dict[str, int] = field(default_factory=dict)

    async def shop(
        self,
        *,
        language: str = "en",
        currency: str = "EUR",
        staff: int = 1,
        menu: tuple[tuple[str, str, int], ...] = MENU,
        **bot: Any,
    ) -> Shop:
        staff_numbers = tuple(unique_number() for _ in range(staff))
        settings = tenants_pb2.BotSettings(
            menu=[menu_item(i, name, minor, currency) for i, name, minor in menu],
            greeting=bot.pop("greeting", "Welcome to Casa Pepe!"),
            promo_text=bot.pop("promo_text", "Thanks! 10% off with code PEPE10"),
            apology_text=bot.pop("apology_text", "We are sorry it was not perfect."),
            staff_numbers=staff_numbers,
            **bot,
        )
        tenant = await create_tenant(
            self.tenants_admin,
            default_language=language,
            support_contact="support@casapepe.example",
            bot=settings,
        )
        sender = unique_number()
        await self.tenants_admin.AddSenderNumber(
            tenants_pb2.AddSenderNumberRequest(tenant_id=tenant.id, number=sender)
        )
        return Shop(tenant.id, sender, staff_numbers)

    async def set_bot(self, shop: Shop, settings: tenants_pb2.BotSettings) -> None:
        current = await self.tenants_admin.GetTenant(
            tenants_pb2.GetTenantRequest(tenant_id=shop.tenant_id)
        )
        await self.tenants_admin.UpdateTenant(
            tenants_pb2.UpdateTenantRequest(
                tenant_id=shop.tenant_id, expected_version=current.tenant.version, bot=settings
            )
        )

    async def write(self, shop: Shop, customer: str, text: str, **fields: Any) -> str:
        """The customer's message, recorded by the conversation store; its message id."""
        response = await self.conversations.RecordInbound(
            inbound(shop.tenant_id, customer, shop.sender, text, **fields)
        )
        message_id: str = response.message.id
        return message_id

    async def settle(self, message_ids: list[str]) -> None:
        """Waits until the bot has handled every message and handed its replies on."""

        async def settled() -> bool:
            async with self.orders_engine.connect() as connection:
                handled = (
                    await connection.execute(
                        sa.select(sa.func.count()).where(processed.c.message_id.in_(message_ids))
                    )
                ).scalar_one()
                waiting = (
                    await connection.execute(sa.select(sa.func.count()).select_from(outbox))
                ).scalar_one()
            return bool(handled == len(message_ids) and waiting == 0)

        async def poll() -> None:
            # Both live in Postgres, where nothing can be awaited but a query.
            while not await settled():  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), SETTLE_TIMEOUT_S)

    async def received(self, shop: Shop, recipient: str) -> list[str]:
        """Everything queued for ``recipient`` from the shop so far, in sending order."""
        async with self.dispatcher_engine.connect() as connection:
            rows = await connection.execute(
                sa.select(jobs.c.body)
                .where(jobs.c.tenant_id == shop.tenant_id, jobs.c.recipient_number == recipient)
                .order_by(jobs.c.seq)
            )
            return [row.body for row in rows]

    async def jobs_for(self, shop: Shop, recipient: str) -> list[sa.Row[Any]]:
        async with self.dispatcher_engine.connect() as connection:
            rows = await connection.execute(
                sa.select(jobs)
                .where(jobs.c.tenant_id == shop.tenant_id, jobs.c.recipient_number == recipient)
                .order_by(jobs.c.seq)
            )
            return list(rows)

    async def new_messages(self, shop: Shop, recipient: str) -> list[str]:
        """What ``recipient`` was sent since the last call for them."""
        everything = await self.received(shop, recipient)
        start = self.seen.get(f"{shop.tenant_id}/{recipient}", 0)
        self.seen[f"{shop.tenant_id}/{recipient}"] = len(everything)
        return everything[start:]

    async def say(self, shop: Shop, customer: str, text: str, **fields: Any) -> list[str]:
        """The customer writes ``text``; what the bot sent back (and anyone else was sent
        nothing is read here: see ``new_messages``)."""
        await self.settle([await self.write(shop, customer, text, **fields)])
        return await self.new_messages(shop, customer)

    async def latest_order(self, shop: Shop, customer: str) -> pb.Order:
        """The customer's newest order past the cart."""
        past_the_cart = [s for s in pb.OrderState.values() if s > pb.ORDER_STATE_DRAFT]
        page = await self.orders.ListOrders(
            pb.ListOrdersRequest(
                tenant_id=shop.tenant_id,
                customer_number=customer,
                page_size=1,
                states=past_the_cart,
            )
        )
        order: pb.Order = page.orders[0]
        return order


def unique_customer() -> str:
    return "+4915" + str(uuid.uuid4().int)[:9]
