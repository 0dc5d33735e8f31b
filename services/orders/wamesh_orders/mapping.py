"""Stored orders as the contract's messages."""

from __future__ import annotations

from babel.numbers import get_currency_precision

from wamesh.common.v1 import money_pb2
from wamesh.orders.v1 import orders_pb2 as pb
from wamesh_kit.timestamps import timestamp
from wamesh_orders.lifecycle import DELIVERY, PICKUP, State
from wamesh_orders.store import OrderRecord, Transition, WatchEvent

STATES: dict[State, pb.OrderState.ValueType] = {
    State.DRAFT: pb.ORDER_STATE_DRAFT,
    State.CONFIRMED: pb.ORDER_STATE_CONFIRMED,
    State.PREPARING: pb.ORDER_STATE_PREPARING,
    State.OUT_FOR_DELIVERY: pb.ORDER_STATE_OUT_FOR_DELIVERY,
    State.READY_FOR_PICKUP: pb.ORDER_STATE_READY_FOR_PICKUP,
    State.DELIVERED: pb.ORDER_STATE_DELIVERED,
    State.RATED: pb.ORDER_STATE_RATED,
    State.CANCELLED: pb.ORDER_STATE_CANCELLED,
}
STATE_OF = {value: state for state, value in STATES.items()}
METHODS = {DELIVERY: pb.FULFILMENT_METHOD_DELIVERY, PICKUP: pb.FULFILMENT_METHOD_PICKUP}
NANOS = 1_000_000_000


def money(minor_units: int, currency: str) -> money_pb2.Money:
    """Minor units of ``currency`` as the contract's Money (whole units and billionths)."""
    scale = 10 ** get_currency_precision(currency)
    units, rest = divmod(abs(minor_units), scale)
    sign = -1 if minor_units < 0 else 1
    return money_pb2.Money(
        currency_code=currency, units=sign * units, nanos=sign * rest * (NANOS // scale)
    )


def transition_message(entry: Transition) -> pb.OrderHistoryEntry:
    return pb.OrderHistoryEntry(
        from_state=STATES[entry.from_state],
        to_state=STATES[entry.to_state],
        actor=entry.actor,
        note=entry.note,
        occurred_at=timestamp(entry.occurred_at),
        version=entry.version,
    )


def order_message(order: OrderRecord) -> pb.Order:
    return pb.Order(
        id=order.id,
        tenant_id=order.tenant_id,
        customer_number=order.customer_number,
        sender_number=order.sender_number,
        conversation_id=order.conversation_id,
        items=[
            pb.OrderItem(
                menu_item_id=line.menu_item_id,
                name=line.name,
                quantity=line.quantity,
                unit_price=money(line.unit_price_minor, order.currency),
            )
            for line in order.lines
        ],
        total=money(order.total_minor, order.currency),
        fulfilment=pb.Fulfilment(
            method=METHODS.get(order.method, pb.FULFILMENT_METHOD_UNSPECIFIED),
            address=order.address,
        ),
        state=STATES[order.state],
        version=order.version,
        history=[transition_message(entry) for entry in order.history],
        rating=order.rating,
        created_at=timestamp(order.created_at),
        updated_at=timestamp(order.updated_at),
        number=order.number or 0,
    )


def watch_message(event: WatchEvent) -> pb.WatchOrdersResponse:
    return pb.WatchOrdersResponse(
        position=event.position,
        order=order_message(event.order),
        transition=transition_message(event.transition),
    )
