"""What each transition tells the customer (and, for a new order, the staff): dispatcher jobs
keyed ``order:{id}:{state}``, so each state reached is told once however often the change
that reached it is retried or replayed."""

from __future__ import annotations

from datetime import datetime, timedelta

from wamesh.dispatch.v1 import dispatch_pb2
from wamesh_kit.timestamps import timestamp
from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.model import BotConfig, CartLine, LatestOrder
from wamesh_orders.bot.rating import rating_reply
from wamesh_orders.bot.views import order_summary
from wamesh_orders.lifecycle import State
from wamesh_orders.store import OrderRecord

EXPIRED = "expired"


def order_key(order: OrderRecord, state: State) -> str:
    return f"order:{order.id}:{state.value}"


def summary(order: OrderRecord, language: str) -> str:
    """The order's lines, total and fulfilment, as the customer and staff read them."""
    return order_summary(cart_lines(order), order.method, order.address, language)


def cart_lines(order: OrderRecord) -> tuple[CartLine, ...]:
    return tuple(
        CartLine(line.menu_item_id, line.name, line.quantity, line.unit_price_minor, order.currency)
        for line in order.lines
    )


def for_transition(
    order: OrderRecord,
    config: BotConfig,
    *,
    note: str,
    now: datetime,
    rating_delay: timedelta,
) -> list[dispatch_pb2.EnqueueRequest]:
    """The messages ``order`` reaching its current state sends."""
    language = order.language
    state = order.state
    number = order.number or 0
    if state is State.CONFIRMED:
        told = summary(order, language)
        staff_language = config.default_language
        return [
            _to_customer(order, render(language, "notify.confirmed", number=number, summary=told)),
            *(
                _job(
                    order,
                    f"{order_key(order, state)}:staff:{staff}",
                    staff,
                    render(
                        staff_language,
                        "notify.staff_new_order",
                        number=number,
                        customer=order.customer_number,
                        summary=summary(order, staff_language),
                    ),
                )
                for staff in sorted(config.staff_numbers)
            ),
        ]
    if state is State.DELIVERED:
        prompt = _job(
            order,
            f"order:{order.id}:rating_prompt",
            order.customer_number,
            render(language, "notify.rating_prompt", number=number),
            priority=dispatch_pb2.PRIORITY_BULK,
        )
        prompt.not_before.CopyFrom(timestamp(now + rating_delay))
        return [_to_customer(order, render(language, "notify.delivered", number=number)), prompt]
    if state is State.CANCELLED:
        if note == EXPIRED:
            return []
        if order.number is None:
            return [_to_customer(order, render(language, "cancel.done", number=number))]
        return [
            _to_customer(order, render(language, "notify.cancelled", number=number, reason=note))
        ]
    if state is State.RATED:
        return [_to_customer(order, rated_reply(order, config))]
    return [_to_customer(order, render(language, f"notify.{state.value}", number=number))]


def rated_reply(order: OrderRecord, config: BotConfig) -> str:
    """The answer to a rating: thanks and the promotion, or the apology and the contact."""
    rated = LatestOrder(order.number or 0, order.state.value)
    return rating_reply(config, rated, order.rating, order.language)


def _to_customer(order: OrderRecord, body: str) -> dispatch_pb2.EnqueueRequest:
    return _job(order, order_key(order, order.state), order.customer_number, body)


def _job(
    order: OrderRecord,
    key: str,
    recipient: str,
    body: str,
    *,
    priority: dispatch_pb2.Priority.ValueType = dispatch_pb2.PRIORITY_INTERACTIVE,
) -> dispatch_pb2.EnqueueRequest:
    return dispatch_pb2.EnqueueRequest(
        tenant_id=order.tenant_id,
        idempotency_key=key,
        sender_number=order.sender_number,
        recipient_number=recipient,
        body=body,
        priority=priority,
    )
