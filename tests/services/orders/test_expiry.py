"""Cart expiry: the sweep cancels a cart nobody touched for ``cart_expiry_s`` (note
``expired``, actor ``system``) and tells nobody; the bot finds the cart gone on the
customer's next message. Each message to the bot touches the cart, so a customer still
writing keeps theirs."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
import sqlalchemy as sa

from tests.services.orders.orders_testkit import Mesh, Shop, unique_customer
from wamesh.orders.v1 import orders_pb2 as pb
from wamesh_orders.schema import outbox

S = pb.OrderState
CART_EXPIRY_S = 2.0
EXPIRY_TIMEOUT_S = 30.0
EMPTY_CART = "Your cart is empty. Send menu to see what we have."


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"cart_expiry_s": CART_EXPIRY_S, "sweep_interval_s": 0.2}


async def cart_of(mesh: Mesh, shop: Shop, customer: str) -> pb.Order:
    response = await mesh.orders.GetCart(
        pb.GetCartRequest(tenant_id=shop.tenant_id, customer_number=customer)
    )
    cart: pb.Order = response.cart
    return cart


async def order(mesh: Mesh, tenant_id: str, order_id: str) -> pb.Order:
    response = await mesh.orders.GetOrder(
        pb.GetOrderRequest(tenant_id=tenant_id, order_id=order_id)
    )
    found: pb.Order = response.order
    return found


async def is_cancelled(mesh: Mesh, cart: pb.Order) -> bool:
    return (await order(mesh, cart.tenant_id, cart.id)).state == S.ORDER_STATE_CANCELLED


async def until_cancelled(mesh: Mesh, cart: pb.Order) -> pb.Order:
    async def poll() -> None:
        # The sweep runs in the service; its outcome is only in Postgres.
        while not await is_cancelled(mesh, cart):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), EXPIRY_TIMEOUT_S)
    return await order(mesh, cart.tenant_id, cart.id)


async def waiting_calls(mesh: Mesh, tenant_id: str) -> int:
    async with mesh.orders_engine.connect() as connection:
        count: int = (
            await connection.execute(
                sa.select(sa.func.count()).where(outbox.c.tenant_id == tenant_id)
            )
        ).scalar_one()
    return count


async def test_an_untouched_cart_expires_silently_and_the_next_message_finds_it_empty(
    mesh: Mesh,
) -> None:
    shop = await mesh.shop()
    ana = unique_customer()
    await mesh.say(shop, ana, "2 x 1")
    cart = await cart_of(mesh, shop, ana)
    assert [(i.name, i.quantity) for i in cart.items] == [("Margherita", 2)]
    told_before = await mesh.received(shop, ana)
    staff_before = await mesh.received(shop, shop.staff[0])

    expired = await until_cancelled(mesh, cart)

    assert expired.number == 0
    assert expired.version == cart.version + 1
    assert [(h.from_state, h.to_state, h.actor, h.note, h.version) for h in expired.history] == [
        (S.ORDER_STATE_DRAFT, S.ORDER_STATE_CANCELLED, "system", "expired", expired.version)
    ]
    # Nobody is told: nothing was written for the dispatcher, and it queued nothing new.
    assert await waiting_calls(mesh, shop.tenant_id) == 0
    assert await mesh.received(shop, ana) == told_before
    assert await mesh.received(shop, shop.staff[0]) == staff_before
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await cart_of(mesh, shop, ana)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await mesh.orders.ListOrders(
        pb.ListOrdersRequest(tenant_id=shop.tenant_id, states=[S.ORDER_STATE_CANCELLED])
    )
    assert [o.id for o in listed.orders] == [cart.id]

    # The bot's session still held the lines: the next message finds them gone.
    assert await mesh.say(shop, ana, "cart") == [EMPTY_CART]
    assert await mesh.say(shop, ana, "checkout") == [EMPTY_CART]
    await mesh.say(shop, ana, "3")
    fresh = await cart_of(mesh, shop, ana)
    assert fresh.id != cart.id
    assert [(i.name, i.quantity) for i in fresh.items] == [("Crème Brûlée", 1)]
    assert (await order(mesh, shop.tenant_id, cart.id)).state == S.ORDER_STATE_CANCELLED


async def test_a_cart_touched_within_the_expiry_is_kept(mesh: Mesh) -> None:
    shop = await mesh.shop()
    ana, bea = unique_customer(), unique_customer()
    await mesh.say(shop, bea, "1")
    left = await cart_of(mesh, shop, bea)
    await mesh.say(shop, ana, "2 x 2")
    kept = await cart_of(mesh, shop, ana)

    # Ana keeps writing, never pausing near the expiry, until her cart has lived longer
    # than the expiry and Bea's, left alone, has expired.
    async with asyncio.timeout(EXPIRY_TIMEOUT_S):
        while True:
            assert await mesh.say(shop, ana, "cart") != [EMPTY_CART]
            now = await cart_of(mesh, shop, ana)
            lived = now.updated_at.ToDatetime() - kept.created_at.ToDatetime()
            if lived > timedelta(seconds=CART_EXPIRY_S) and await is_cancelled(mesh, left):
                break
            await asyncio.sleep(CART_EXPIRY_S / 4)  # the customer's pace, not a wait for a result

    assert now.id == kept.id
    assert now.state == S.ORDER_STATE_DRAFT
    assert [(i.name, i.quantity) for i in now.items] == [("Paella Valenciana", 2)]
    assert list(now.history) == []
    expired = await order(mesh, shop.tenant_id, left.id)
    assert [(h.actor, h.note) for h in expired.history] == [("system", "expired")]
    replies = await mesh.say(shop, ana, "cart")
    assert replies[0].startswith("Your cart:")
    assert "2 \N{MULTIPLICATION SIGN} Paella Valenciana" in replies[0]
