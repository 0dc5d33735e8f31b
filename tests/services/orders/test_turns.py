"""The bot as a service: customers' messages arrive on the real ``inbound`` stream (recorded by
the real conversation store), each turn commits in the orders database, and the replies are
queued at the real dispatcher. Each test reads what the customer would receive."""

# The multiplication sign and the digits of other scripts are what customers see and type.
# ruff: noqa: RUF001

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
import sqlalchemy as sa

from tests.services.orders.orders_testkit import MENU, Mesh, menu_item, unique_customer
from wamesh.common.v1 import content_pb2
from wamesh.conversations.v1 import conversations_pb2
from wamesh.orders.v1 import orders_pb2 as pb
from wamesh.tenants.v1 import tenants_pb2
from wamesh_orders.bot.catalogue import render
from wamesh_orders.schema import orders, processed
from wamesh_orders.turns import GROUP, INBOUND_STREAM

S = pb.OrderState
MENU_TEXT = (
    "Menu:\n"
    "1. Margherita — €25.00\n"
    "2. Paella Valenciana — €42.00\n"
    "3. Crème Brûlée — €9.00\n"
    "To order, send the quantity and the item number (e.g. 2 x 1) or the item's name. "
    "Send help for all commands."
)


async def order_rows(mesh: Mesh, tenant_id: str) -> list[tuple[Any, ...]]:
    async with mesh.orders_engine.connect() as connection:
        rows = await connection.execute(
            sa.select(orders.c.id, orders.c.state, orders.c.version, orders.c.number)
            .where(orders.c.tenant_id == tenant_id)
            .order_by(orders.c.id)
        )
        return [tuple(row) for row in rows]


async def test_a_customer_orders_for_delivery_and_rates_it(mesh: Mesh) -> None:
    shop = await mesh.shop()
    ana = unique_customer()
    assert await mesh.say(shop, ana, "hi") == ["Welcome to Casa Pepe!", MENU_TEXT]
    assert await mesh.say(shop, ana, "2 x 1") == [
        "Added 2 × Margherita. Cart total: €50.00. "
        "Send checkout to order, or cart to see your cart."
    ]
    assert await mesh.say(shop, ana, "checkout") == [
        "Delivery or pickup? Reply 1 for delivery or 2 for pickup."
    ]
    assert await mesh.say(shop, ana, "1") == ["Please send the delivery address."]
    assert await mesh.say(shop, ana, "Calle Mayor 5") == [
        "Your order:\n2 × Margherita — €50.00\nTotal: €50.00\nDelivery to: Calle Mayor 5\n"
        "Send confirm to place the order, or cancel to stop."
    ]
    [confirmed] = await mesh.say(shop, ana, "confirm")
    order = await mesh.latest_order(shop, ana)
    assert confirmed == (
        f"Your order #{order.number} is confirmed.\n"
        "2 × Margherita — €50.00\nTotal: €50.00\nDelivery to: Calle Mayor 5"
    )
    assert await mesh.say(shop, ana, "status") == [f"Your order #{order.number} is confirmed."]

    # The kitchen moves it from the staff WhatsApp number; the customer hears of each step.
    staff = shop.staff[0]
    await mesh.new_messages(shop, staff)
    for command, state in (
        ("preparing", "being prepared"),
        ("on the way", "out for delivery"),
        ("delivered", "delivered"),
    ):
        assert await mesh.say(shop, staff, f"#{order.number} {command}") == [
            f"Order #{order.number} is now {state}."
        ]
    told = await mesh.new_messages(shop, ana)
    assert told[:3] == [
        f"Your order #{order.number} is being prepared.",
        f"Your order #{order.number} is on its way.",
        f"Your order #{order.number} was delivered. Enjoy!",
    ]
    assert told[3] == (
        f"How was order #{order.number}? Reply with a number from 1 (bad) to 5 (great)."
    )
    assert await mesh.say(shop, ana, "7") == [
        f"Please rate order #{order.number} with a number from 1 to 5."
    ]
    assert await mesh.say(shop, ana, "5") == [
        f"Thank you for rating order #{order.number}!\nThanks! 10% off with code PEPE10"
    ]
    rated = await mesh.latest_order(shop, ana)
    assert (rated.state, rated.rating) == (S.ORDER_STATE_RATED, 5)
    # A second rating is just a number now: nothing changes.
    await mesh.say(shop, ana, "1")
    assert (await mesh.latest_order(shop, ana)).version == rated.version


async def test_a_poor_rating_gets_the_apology_and_the_support_contact(mesh: Mesh) -> None:
    shop = await mesh.shop()
    ana = unique_customer()
    for text in ("1", "checkout", "2", "confirm"):
        await mesh.say(shop, ana, text)
    order = await mesh.latest_order(shop, ana)
    for command in ("preparing", "ready", "delivered"):
        await mesh.say(shop, shop.staff[0], f"#{order.number} {command}")
    await mesh.new_messages(shop, ana)
    assert await mesh.say(shop, ana, "٢") == [
        "We are sorry it was not perfect.\nYou can reach us at support@casapepe.example."
    ]
    assert (await mesh.latest_order(shop, ana)).rating == 2


async def test_staff_words_from_a_customer_move_nothing(mesh: Mesh) -> None:
    shop = await mesh.shop()
    ana, bea = unique_customer(), unique_customer()
    for text in ("1", "checkout", "2", "confirm"):
        await mesh.say(shop, ana, text)
    order = await mesh.latest_order(shop, ana)
    await mesh.say(shop, bea, f"#{order.number} delivered")
    assert (await mesh.latest_order(shop, ana)).state == S.ORDER_STATE_CONFIRMED
    await mesh.new_messages(shop, shop.staff[0])
    assert await mesh.say(shop, shop.staff[0], f"#{order.number} delivered") == [
        f"Order #{order.number} cannot be moved: an order cannot go from confirmed to delivered"
    ]
    assert await mesh.say(shop, shop.staff[0], "#99999 preparing") == ["There is no order #99999."]


async def test_bad_input_gets_a_helpful_reply_and_changes_nothing(mesh: Mesh) -> None:
    shop = await mesh.shop()
    ana = unique_customer()
    await mesh.say(shop, ana, "2 x 1")
    cart_before = await mesh.orders.GetCart(
        pb.GetCartRequest(tenant_id=shop.tenant_id, customer_number=ana)
    )
    for text in ("😀🍕", "x" * 4000, "0 x 1", "10000 x 1", "9", "great"):
        replies = await mesh.say(shop, ana, text)
        assert len(replies) == 1, (text, replies)
        assert replies[0].strip(), text
        assert len(replies[0]) < 400, text
    # A message with only a picture: no text to read.
    picture = content_pb2.Media(url="https://example.com/a.jpg", content_type="image/jpeg")
    assert await mesh.say(shop, ana, "", media=[picture]) == [
        "I can only read text. Send menu to see the menu, or help for the commands."
    ]
    await mesh.say(shop, ana, "checkout")
    await mesh.say(shop, ana, "1")
    assert await mesh.say(shop, ana, "     ") == [
        "Please send the delivery address in words: street, building and area."
    ]
    cart_after = await mesh.orders.GetCart(
        pb.GetCartRequest(tenant_id=shop.tenant_id, customer_number=ana)
    )
    assert [(i.menu_item_id, i.quantity) for i in cart_after.cart.items] == [
        (i.menu_item_id, i.quantity) for i in cart_before.cart.items
    ]


async def test_an_item_taken_off_the_menu_leaves_the_cart_at_checkout(mesh: Mesh) -> None:
    shop = await mesh.shop()
    ana = unique_customer()
    await mesh.say(shop, ana, "1")
    await mesh.say(shop, ana, "3")
    await mesh.set_bot(
        shop,
        tenants_pb2.BotSettings(
            menu=[menu_item(i, name, minor) for i, name, minor in MENU if i != "creme"],
            greeting="Welcome to Casa Pepe!",
            staff_numbers=shop.staff,
        ),
    )
    replies = await mesh.say(shop, ana, "checkout")
    assert replies[0] == "Crème Brûlée is no longer available and was taken out of your cart."
    await mesh.say(shop, ana, "2")
    await mesh.say(shop, ana, "confirm")
    order = await mesh.latest_order(shop, ana)
    assert [(i.name, i.quantity) for i in order.items] == [("Margherita", 1)]


async def test_stop_silences_the_bot_until_start_and_each_is_confirmed_once(
    mesh: Mesh, conversations_admin: Any
) -> None:
    shop = await mesh.shop(languages=["en", "ar"])
    ana = unique_customer()
    await mesh.say(shop, ana, "hi")
    assert await mesh.say(shop, ana, "STOP") == [
        "You will get no more messages from us. Send START to have them again."
    ]
    key = conversations_pb2.ConversationKey(customer_number=ana, sender_number=shop.sender)
    conversation = await conversations_admin.GetConversation(
        conversations_pb2.GetConversationRequest(tenant_id=shop.tenant_id, participants=key)
    )
    assert conversation.conversation.opted_out
    assert await mesh.say(shop, ana, "menu") == []
    assert await mesh.say(shop, ana, "stop") == []
    assert await mesh.say(shop, ana, "START") == [
        "Welcome back! You will get our messages again. Send menu to order."
    ]
    assert await mesh.say(shop, ana, "menu") == [MENU_TEXT]
    assert await mesh.say(shop, ana, "إيقاف") == [render("ar", "opt_out.confirmed")]


async def test_a_rate_limited_message_is_not_answered(mesh: Mesh) -> None:
    shop = await mesh.shop()
    ana = unique_customer()
    assert await mesh.say(shop, ana, "hi", rate_limited=True) == []
    assert await mesh.say(shop, ana, "hi") == ["Welcome to Casa Pepe!", MENU_TEXT]


async def test_replaying_the_whole_inbound_stream_changes_nothing_and_sends_nothing(
    mesh: Mesh, redis_url: str
) -> None:
    shop = await mesh.shop()
    customers = [unique_customer() for _ in range(3)]
    for customer in customers:
        for text in ("hi", "2 x 2", "checkout", "2", "confirm", "status"):
            await mesh.say(shop, customer, text)
    await mesh.say(
        shop, shop.staff[0], f"#{(await mesh.latest_order(shop, customers[0])).number} preparing"
    )
    before_orders = await order_rows(mesh, shop.tenant_id)
    before_jobs = {c: await mesh.received(shop, c) for c in [*customers, *shop.staff]}
    async with mesh.orders_engine.connect() as connection:
        handled = (
            await connection.execute(sa.select(sa.func.count()).select_from(processed))
        ).scalar_one()

    redis = aioredis.Redis.from_url(redis_url)
    try:
        entries = await redis.xlen(INBOUND_STREAM)
        assert entries >= 19
        await redis.xgroup_setid(INBOUND_STREAM, GROUP, "0")

        # Everything is delivered again; wait until the group has caught up once more.
        newest: Any = await redis.xrevrange(INBOUND_STREAM, count=1)
        last_id = newest[0][0]

        async def caught_up() -> bool:
            groups = await redis.xinfo_groups(INBOUND_STREAM)
            (group,) = [g for g in groups if g["name"] == GROUP.encode()]
            return bool(group["pending"] == 0 and group["last-delivered-id"] == last_id)

        async with asyncio.timeout(30):
            while not await caught_up():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        await redis.aclose()

    assert await order_rows(mesh, shop.tenant_id) == before_orders
    assert {c: await mesh.received(shop, c) for c in before_jobs} == before_jobs
    async with mesh.orders_engine.connect() as connection:
        assert (
            await connection.execute(sa.select(sa.func.count()).select_from(processed))
        ).scalar_one() == handled
