"""Checks of OrderService requests: each refusal is INVALID_ARGUMENT naming its field."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from wamesh.orders.v1 import orders_pb2 as pb
from wamesh_kit import ids
from wamesh_kit.errors import InvalidArgument
from wamesh_kit.numbers import normalize_number
from wamesh_kit.telemetry import tag_tenant
from wamesh_orders.lifecycle import State
from wamesh_orders.mapping import STATE_OF

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
MAX_NOTE = 500
# States staff reach with AdvanceOrder: CANCELLED has CancelOrder, RATED is the customer's
# and a cart is confirmed by its customer.
ADVANCE_TARGETS = frozenset(
    {State.PREPARING, State.OUT_FOR_DELIVERY, State.READY_FOR_PICKUP, State.DELIVERED}
)


def tenant(value: str) -> str:
    return tag_tenant(ids.tenant_id(value))


def order_id(value: str) -> str:
    if not value:
        raise InvalidArgument("is required", field="order_id")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument("is not an order id", field="order_id") from None


def expected_version(value: int) -> int:
    if value < 1:
        raise InvalidArgument("is required (the order's current version)", field="expected_version")
    return value


def target_state(value: pb.OrderState.ValueType) -> State:
    state = STATE_OF.get(value)
    if state is None:
        raise InvalidArgument("is required", field="target_state")
    if state not in ADVANCE_TARGETS:
        raise InvalidArgument(
            f"{state} is not reached with AdvanceOrder (one of "
            f"{', '.join(sorted(ADVANCE_TARGETS))})",
            field="target_state",
        )
    return state


def states(values: Iterable[pb.OrderState.ValueType]) -> list[State]:
    found = []
    for index, value in enumerate(values):
        state = STATE_OF.get(value)
        if state is None:
            raise InvalidArgument("is not an order state", field=f"states[{index}]")
        found.append(state)
    return found


def note(value: str, field: str) -> str:
    if len(value) > MAX_NOTE:
        raise InvalidArgument(f"at most {MAX_NOTE} characters", field=field)
    return value.strip()


def customer_number(value: str, *, required: bool) -> str:
    if not value and not required:
        return ""
    if not value.strip():
        raise InvalidArgument("is required", field="customer_number")
    return normalize_number(value, field="customer_number")


def page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def position(value: int) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field="after_position")
    return value
