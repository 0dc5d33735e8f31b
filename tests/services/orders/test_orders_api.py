"""OrderService as staff use it: reading orders, moving them along the lifecycle, and the live
feed, over gRPC against the real service and its real peers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
import pytest

from tests.services.orders.orders_testkit import Mesh, Shop, unique_customer
from tests.services.tenants.tenants_testkit import assert_refused
from wamesh.orders.v1 import orders_pb2 as pb
from wamesh.orders.v1.orders_pb2_grpc import OrderServiceStub
from wamesh_kit.rpc.auth import mint_tenant_token
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_JWT_SECRET

S = pb.OrderState


async def confirmed_order(
    mesh: Mesh, shop: Shop, customer: str, *, pickup: bool = False
) -> pb.Order:
    """An order the customer builds and confirms through the bot."""
    await mesh.say(shop, customer, "hi")
    await mesh.say(shop, customer, "2 x 1")
    await mesh.say(shop, customer, "checkout")
    if pickup:
        await mesh.say(shop, customer, "2")
    else:
        await mesh.say(shop, customer, "1")
        await mesh.say(shop, customer, "Calle Mayor 5, Madrid")
    await mesh.say(shop, customer, "confirm")
    order = await mesh.latest_order(shop, customer)
    assert order.state == S.ORDER_STATE_CONFIRMED
    return order


async def advance(mesh: Mesh, order: pb.Order, target: int, **fields: Any) -> pb.Order:
    response = await mesh.orders.AdvanceOrder(
        pb.AdvanceOrderRequest(
            tenant_id=order.tenant_id,
            order_id=order.id,
            target_state=target,  # type: ignore[arg-type]
            expected_version=fields.pop("expected_version", order.version),
            **fields,
        )
    )
    moved: pb.Order = response.order
    return moved


async def test_staff_move_an_order_to_its_door_and_the_customer_is_told_each_step(
    mesh: Mesh,
) -> None:
    shop = await mesh.shop()
    customer = unique_customer()
    order = await confirmed_order(mesh, shop, customer)
    assert order.number >= 1
    assert [(i.name, i.quantity) for i in order.items] == [("Margherita", 2)]
    assert (order.total.currency_code, order.total.units, order.total.nanos) == ("EUR", 50, 0)
    assert order.fulfilment.address == "Calle Mayor 5, Madrid"

    for target in (
        S.ORDER_STATE_PREPARING,
        S.ORDER_STATE_OUT_FOR_DELIVERY,
        S.ORDER_STATE_DELIVERED,
    ):
        order = await advance(mesh, order, target, note="by the kitchen")
    assert order.state == S.ORDER_STATE_DELIVERED
    assert [(h.from_state, h.to_state, h.actor) for h in order.history] == [
        (S.ORDER_STATE_DRAFT, S.ORDER_STATE_CONFIRMED, "customer"),
        (S.ORDER_STATE_CONFIRMED, S.ORDER_STATE_PREPARING, "staff"),
        (S.ORDER_STATE_PREPARING, S.ORDER_STATE_OUT_FOR_DELIVERY, "staff"),
        (S.ORDER_STATE_OUT_FOR_DELIVERY, S.ORDER_STATE_DELIVERED, "staff"),
    ]
    assert [h.version for h in order.history] == sorted({h.version for h in order.history})
    assert order.history[-1].version == order.version

    jobs = await mesh.jobs_for(shop, customer)
    keys = [job.idempotency_key for job in jobs]
    for state in ("confirmed", "preparing", "out_for_delivery", "delivered"):
        assert keys.count(f"order:{order.id}:{state}") == 1, keys
    (prompt,) = [job for job in jobs if job.idempotency_key == f"order:{order.id}:rating_prompt"]
    assert prompt.priority == "bulk"
    assert prompt.not_before - prompt.created_at >= timedelta(seconds=1799)
    bodies = {job.idempotency_key: job.body for job in jobs}
    assert bodies[f"order:{order.id}:preparing"] == f"Your order #{order.number} is being prepared."


async def test_the_staff_numbers_hear_of_each_confirmed_order(mesh: Mesh) -> None:
    shop = await mesh.shop(staff=2)
    customer = unique_customer()
    order = await confirmed_order(mesh, shop, customer, pickup=True)
    for staff in shop.staff:
        (told,) = await mesh.received(shop, staff)
        assert told.startswith(f"New order #{order.number} from {customer}:")
        assert "2 \N{MULTIPLICATION SIGN} Margherita" in told


async def test_a_move_the_lifecycle_forbids_is_refused_naming_both_states(mesh: Mesh) -> None:
    shop = await mesh.shop()
    delivery = await confirmed_order(mesh, shop, unique_customer())
    preparing = await advance(mesh, delivery, S.ORDER_STATE_PREPARING)
    details = await assert_refused(
        advance(mesh, preparing, S.ORDER_STATE_READY_FOR_PICKUP),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "preparing" in details
    assert "ready_for_pickup" in details
    out = await advance(mesh, preparing, S.ORDER_STATE_OUT_FOR_DELIVERY)
    delivered = await advance(mesh, out, S.ORDER_STATE_DELIVERED)
    details = await assert_refused(
        advance(mesh, delivered, S.ORDER_STATE_PREPARING), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert "delivered" in details
    assert "preparing" in details
    details = await assert_refused(
        mesh.orders.CancelOrder(
            pb.CancelOrderRequest(
                tenant_id=shop.tenant_id, order_id=delivered.id, expected_version=delivered.version
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "delivered" in details
    assert "cancelled" in details
    after = (
        await mesh.orders.GetOrder(
            pb.GetOrderRequest(tenant_id=shop.tenant_id, order_id=delivered.id)
        )
    ).order
    assert (after.state, after.version) == (delivered.state, delivered.version)


async def test_a_stale_version_changes_nothing(mesh: Mesh) -> None:
    shop = await mesh.shop()
    order = await confirmed_order(mesh, shop, unique_customer())
    moved = await advance(mesh, order, S.ORDER_STATE_PREPARING)
    await assert_refused(
        advance(mesh, moved, S.ORDER_STATE_OUT_FOR_DELIVERY, expected_version=order.version),
        grpc.StatusCode.FAILED_PRECONDITION,
        "expected_version",
    )
    now = (
        await mesh.orders.GetOrder(pb.GetOrderRequest(tenant_id=shop.tenant_id, order_id=order.id))
    ).order
    assert (now.state, now.version, len(now.history)) == (
        S.ORDER_STATE_PREPARING,
        moved.version,
        len(moved.history),
    )
    # Asked again at the current version, a move already made answers the order unchanged.
    again = await advance(mesh, now, S.ORDER_STATE_PREPARING)
    assert (again.version, len(again.history)) == (now.version, len(now.history))


async def test_of_two_staff_moving_one_order_at_once_exactly_one_wins(mesh: Mesh) -> None:
    shop = await mesh.shop()
    order = await confirmed_order(mesh, shop, unique_customer(), pickup=True)
    outcomes = await asyncio.gather(
        advance(mesh, order, S.ORDER_STATE_PREPARING),
        advance(mesh, order, S.ORDER_STATE_PREPARING),
        mesh.orders.CancelOrder(
            pb.CancelOrderRequest(
                tenant_id=shop.tenant_id, order_id=order.id, expected_version=order.version
            )
        ),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(won) == 1, outcomes
    assert len(lost) == 2, outcomes
    assert {e.code() for e in lost} == {grpc.StatusCode.FAILED_PRECONDITION}
    final = (
        await mesh.orders.GetOrder(pb.GetOrderRequest(tenant_id=shop.tenant_id, order_id=order.id))
    ).order
    assert final.version == order.version + 1


async def test_bad_requests_are_refused_naming_the_field(mesh: Mesh) -> None:
    shop = await mesh.shop()
    order = await confirmed_order(mesh, shop, unique_customer())
    orders = mesh.orders
    unknown = "00000000-0000-4000-8000-000000000000"
    await assert_refused(
        orders.GetOrder(pb.GetOrderRequest(tenant_id=shop.tenant_id, order_id=unknown)),
        grpc.StatusCode.NOT_FOUND,
        "order_id",
    )
    await assert_refused(
        orders.GetOrder(pb.GetOrderRequest(tenant_id=shop.tenant_id, order_id="#1042")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "order_id",
    )
    for target in (S.ORDER_STATE_RATED, S.ORDER_STATE_CANCELLED, S.ORDER_STATE_UNSPECIFIED):
        await assert_refused(
            advance(mesh, order, target), grpc.StatusCode.INVALID_ARGUMENT, "target_state"
        )
    await assert_refused(
        advance(mesh, order, S.ORDER_STATE_PREPARING, expected_version=0),
        grpc.StatusCode.INVALID_ARGUMENT,
        "expected_version",
    )
    await assert_refused(
        orders.ListOrders(pb.ListOrdersRequest(tenant_id=shop.tenant_id, page_size=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_size",
    )
    await assert_refused(
        orders.ListOrders(pb.ListOrdersRequest(tenant_id=shop.tenant_id, states=[42])),  # type: ignore[list-item]
        grpc.StatusCode.INVALID_ARGUMENT,
        "states[0]",
    )
    await assert_refused(
        orders.GetCart(pb.GetCartRequest(tenant_id=shop.tenant_id, customer_number="12")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "customer_number",
    )
    await assert_refused(
        orders.GetOrder(pb.GetOrderRequest(tenant_id="", order_id=order.id)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "tenant_id",
    )


async def test_a_tenant_token_reaches_only_its_own_tenant(
    mesh: Mesh, service: GrpcService, grpc_channels: Callable[[int, str | None], Any]
) -> None:
    mine, theirs = await mesh.shop(), await mesh.shop()
    order = await confirmed_order(mesh, theirs, unique_customer())
    token = mint_tenant_token(DEV_JWT_SECRET, mine.tenant_id, timedelta(minutes=5))
    as_mine = OrderServiceStub(grpc_channels(service.port, token))
    await assert_refused(
        as_mine.GetOrder(pb.GetOrderRequest(tenant_id=theirs.tenant_id, order_id=order.id)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await assert_refused(
        as_mine.AdvanceOrder(
            pb.AdvanceOrderRequest(
                tenant_id=theirs.tenant_id,
                order_id=order.id,
                target_state=S.ORDER_STATE_PREPARING,
                expected_version=order.version,
            )
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # Its own tenant id with another tenant's order: that order does not exist for it.
    await assert_refused(
        as_mine.GetOrder(pb.GetOrderRequest(tenant_id=mine.tenant_id, order_id=order.id)),
        grpc.StatusCode.NOT_FOUND,
        "order_id",
    )
    stream = as_mine.WatchOrders(pb.WatchOrdersRequest(tenant_id=theirs.tenant_id))
    await assert_refused(stream.read(), grpc.StatusCode.PERMISSION_DENIED)


async def test_orders_list_newest_first_by_state_a_page_at_a_time(mesh: Mesh) -> None:
    shop = await mesh.shop()
    customers = [unique_customer() for _ in range(3)]
    made = [await confirmed_order(mesh, shop, customer, pickup=True) for customer in customers]
    await advance(mesh, made[1], S.ORDER_STATE_PREPARING)
    seen: list[str] = []
    token = ""
    while True:
        page = await mesh.orders.ListOrders(
            pb.ListOrdersRequest(tenant_id=shop.tenant_id, page_size=2, page_token=token)
        )
        seen += [order.id for order in page.orders]
        token = page.next_page_token
        if not token:
            break
    assert seen == [order.id for order in reversed(made)]
    preparing = await mesh.orders.ListOrders(
        pb.ListOrdersRequest(tenant_id=shop.tenant_id, states=[S.ORDER_STATE_PREPARING])
    )
    assert [order.id for order in preparing.orders] == [made[1].id]
    first = await mesh.orders.ListOrders(
        pb.ListOrdersRequest(tenant_id=shop.tenant_id, page_size=1)
    )
    await assert_refused(
        mesh.orders.ListOrders(
            pb.ListOrdersRequest(
                tenant_id=shop.tenant_id,
                page_size=1,
                page_token=first.next_page_token,
                states=[S.ORDER_STATE_CONFIRMED],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "page_token",
    )


async def test_a_cart_is_the_customers_draft_order(mesh: Mesh) -> None:
    shop = await mesh.shop()
    customer = unique_customer()
    await assert_refused(
        mesh.orders.GetCart(pb.GetCartRequest(tenant_id=shop.tenant_id, customer_number=customer)),
        grpc.StatusCode.NOT_FOUND,
        "customer_number",
    )
    await mesh.say(shop, customer, "3 x 2")
    cart = (
        await mesh.orders.GetCart(
            pb.GetCartRequest(tenant_id=shop.tenant_id, customer_number=customer)
        )
    ).cart
    assert cart.state == S.ORDER_STATE_DRAFT
    assert cart.number == 0
    assert [(i.menu_item_id, i.quantity) for i in cart.items] == [("paella", 3)]
    assert (cart.total.units, cart.total.nanos) == (126, 0)


async def test_a_watcher_that_reconnects_misses_nothing_and_sees_nothing_twice(
    mesh: Mesh,
) -> None:
    shop = await mesh.shop()
    watch = mesh.orders.WatchOrders(pb.WatchOrdersRequest(tenant_id=shop.tenant_id))
    first = await confirmed_order(mesh, shop, unique_customer(), pickup=True)
    event = await asyncio.wait_for(watch.read(), 10)
    assert event.order.id == first.id
    assert event.transition.to_state == S.ORDER_STATE_CONFIRMED
    assert event.order.state == S.ORDER_STATE_CONFIRMED
    position = event.position
    watch.cancel()

    # While nobody watches: a move, and a new order.
    moved = await advance(mesh, first, S.ORDER_STATE_PREPARING)
    second = await confirmed_order(mesh, shop, unique_customer())
    await advance(mesh, moved, S.ORDER_STATE_READY_FOR_PICKUP)

    resumed = mesh.orders.WatchOrders(
        pb.WatchOrdersRequest(tenant_id=shop.tenant_id, after_position=position)
    )
    events = [await asyncio.wait_for(resumed.read(), 10) for _ in range(3)]
    assert [(e.order.id, e.transition.to_state) for e in events] == [
        (first.id, S.ORDER_STATE_PREPARING),
        (second.id, S.ORDER_STATE_CONFIRMED),
        (first.id, S.ORDER_STATE_READY_FOR_PICKUP),
    ]
    assert [e.position for e in events] == [position + 1, position + 2, position + 3]
    # Each event shows the order as it stood then, not as it stands now.
    assert events[0].order.state == S.ORDER_STATE_PREPARING
    assert [h.to_state for h in events[0].order.history][-1] == S.ORDER_STATE_PREPARING
    # Live: the next move arrives on the open stream.
    third = await confirmed_order(mesh, shop, unique_customer(), pickup=True)
    live = await asyncio.wait_for(resumed.read(), 10)
    assert (live.order.id, live.position) == (third.id, position + 4)
    resumed.cancel()


@pytest.mark.parametrize("count", [12])
async def test_order_numbers_are_unique_per_tenant_under_concurrency(
    mesh: Mesh, count: int
) -> None:
    shop = await mesh.shop()
    customers = [unique_customer() for _ in range(count)]
    for customer in customers:
        await mesh.say(shop, customer, "1")
        await mesh.say(shop, customer, "checkout")
        await mesh.say(shop, customer, "2")
    # Every customer confirms at once.
    ids = [await mesh.write(shop, customer, "confirm") for customer in customers]
    await mesh.settle(ids)
    numbers = [(await mesh.latest_order(shop, c)).number for c in customers]
    assert sorted(numbers) == list(range(1, count + 1))
