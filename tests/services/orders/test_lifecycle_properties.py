"""The order lifecycle under random staff and customer actions, against the real service: no
order ever makes a move outside the one transition table, and every state an order reaches
is told to the customer exactly once (one dispatcher job keyed ``order:{id}:{state}``)."""

from __future__ import annotations

from typing import Any

import grpc
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.services.orders.orders_testkit import Mesh, Shop, unique_customer
from wamesh.orders.v1 import orders_pb2 as pb
from wamesh_dispatcher.schema import jobs
from wamesh_orders.lifecycle import TRANSITIONS, Actor, State
from wamesh_orders.mapping import STATE_OF

STAFF_TARGETS = {
    "preparing": pb.ORDER_STATE_PREPARING,
    "out_for_delivery": pb.ORDER_STATE_OUT_FOR_DELIVERY,
    "ready_for_pickup": pb.ORDER_STATE_READY_FOR_PICKUP,
    "delivered": pb.ORDER_STATE_DELIVERED,
}
STAFF_WORDS = {
    "preparing": "preparing",
    "out_for_delivery": "on the way",
    "ready_for_pickup": "ready",
    "delivered": "delivered",
    "cancelled": "cancelled",
}
actions = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.sampled_from(sorted(STAFF_TARGETS))),
        st.tuples(st.just("whatsapp"), st.sampled_from(sorted(STAFF_WORDS))),
        st.tuples(st.just("staff_cancel"), st.just("")),
        st.tuples(st.just("say"), st.sampled_from(["cancel", "status", "1", "4", "5", "7"])),
        # A stale version: the move must be refused and change nothing.
        st.tuples(st.just("stale"), st.sampled_from(sorted(STAFF_TARGETS))),
    ),
    max_size=8,
)


async def current(mesh: Mesh, order: pb.Order) -> pb.Order:
    response = await mesh.orders.GetOrder(
        pb.GetOrderRequest(tenant_id=order.tenant_id, order_id=order.id)
    )
    found: pb.Order = response.order
    return found


async def act(
    mesh: Mesh, shop: Shop, customer: str, order: pb.Order, action: tuple[str, str]
) -> None:
    kind, value = action
    now = await current(mesh, order)
    refusal: grpc.aio.AioRpcError | None = None
    try:
        if kind in ("advance", "stale"):
            await mesh.orders.AdvanceOrder(
                pb.AdvanceOrderRequest(
                    tenant_id=order.tenant_id,
                    order_id=order.id,
                    target_state=STAFF_TARGETS[value],
                    expected_version=now.version - 1 if kind == "stale" else now.version,
                )
            )
        elif kind == "staff_cancel":
            await mesh.orders.CancelOrder(
                pb.CancelOrderRequest(
                    tenant_id=order.tenant_id,
                    order_id=order.id,
                    expected_version=now.version,
                    reason="out of stock",
                )
            )
        elif kind == "whatsapp":
            await mesh.say(shop, shop.staff[0], f"#{order.number} {STAFF_WORDS[value]}")
        else:
            await mesh.say(shop, customer, value)
    except grpc.aio.AioRpcError as error:
        refusal = error
    if refusal is not None:
        assert refusal.code() == grpc.StatusCode.FAILED_PRECONDITION, refusal.details()
        after = await current(mesh, order)
        assert after.version == now.version, "a refused move changed the order"


async def notification_keys(mesh: Mesh, order: pb.Order) -> list[str]:
    async with mesh.dispatcher_engine.connect() as connection:
        rows = await connection.execute(
            sa.select(jobs.c.idempotency_key).where(
                jobs.c.tenant_id == order.tenant_id,
                jobs.c.recipient_number == order.customer_number,
                jobs.c.idempotency_key.like(f"order:{order.id}:%"),
            )
        )
        return [row.idempotency_key for row in rows]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pickup=st.booleans(), steps=actions)
async def test_random_actions_stay_in_the_table_and_tell_each_state_once(
    mesh: Mesh, pickup: bool, steps: list[tuple[str, str]]
) -> None:
    shop = await mesh.shop()
    customer = unique_customer()
    for text in ("1", "checkout", "2" if pickup else "1"):
        await mesh.say(shop, customer, text)
    if not pickup:
        await mesh.say(shop, customer, "Calle Mayor 5")
    await mesh.say(shop, customer, "confirm")
    order = await mesh.latest_order(shop, customer)

    for step in steps:
        await act(mesh, shop, customer, order, step)

    final = await current(mesh, order)
    moves = [(STATE_OF[h.from_state], STATE_OF[h.to_state], Actor(h.actor)) for h in final.history]
    for before, after, actor in moves:
        move = TRANSITIONS.get((before, after))
        assert move is not None, f"{before} -> {after} is not in the table"
        assert actor in move.actors, f"{actor} made {before} -> {after}"
        assert move.method in (None, "pickup" if pickup else "delivery")
    assert [h.version for h in final.history] == list(
        range(final.history[0].version, final.version + 1)
    )
    assert STATE_OF[final.state] == moves[-1][1]

    reached = [after for _, after, _ in moves]
    keys = await notification_keys(mesh, final)
    told: dict[Any, int] = {}
    for key in keys:
        suffix = key.removeprefix(f"order:{final.id}:")
        if suffix == "rating_prompt":
            continue
        told[State(suffix)] = told.get(State(suffix), 0) + 1
    assert told == {state: 1 for state in reached}, (moves, keys)
    if State.DELIVERED in reached:
        assert f"order:{final.id}:rating_prompt" in keys
