"""The order lifecycle: the one table of allowed transitions, and who may make each.

DRAFT (the cart) -> CONFIRMED -> PREPARING -> OUT_FOR_DELIVERY (delivery) or
READY_FOR_PICKUP (pickup) -> DELIVERED -> RATED; CANCELLED from DRAFT, CONFIRMED and
PREPARING. Everything that moves an order asks ``check`` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wamesh_kit.errors import FailedPrecondition


class State(StrEnum):
    DRAFT = "draft"
    CONFIRMED = "confirmed"
    PREPARING = "preparing"
    OUT_FOR_DELIVERY = "out_for_delivery"
    READY_FOR_PICKUP = "ready_for_pickup"
    DELIVERED = "delivered"
    RATED = "rated"
    CANCELLED = "cancelled"


class Actor(StrEnum):
    CUSTOMER = "customer"
    STAFF = "staff"
    SYSTEM = "system"


DELIVERY = "delivery"
PICKUP = "pickup"


@dataclass(frozen=True)
class Move:
    actors: frozenset[Actor]
    # The fulfilment method the move needs; None for either.
    method: str | None = None


_CUSTOMER = frozenset({Actor.CUSTOMER})
_STAFF = frozenset({Actor.STAFF})
_ANYONE = frozenset(Actor)

TRANSITIONS: dict[tuple[State, State], Move] = {
    (State.DRAFT, State.CONFIRMED): Move(_CUSTOMER),
    (State.DRAFT, State.CANCELLED): Move(frozenset({Actor.CUSTOMER, Actor.SYSTEM})),
    (State.CONFIRMED, State.PREPARING): Move(_STAFF),
    (State.CONFIRMED, State.CANCELLED): Move(_ANYONE),
    (State.PREPARING, State.OUT_FOR_DELIVERY): Move(_STAFF, DELIVERY),
    (State.PREPARING, State.READY_FOR_PICKUP): Move(_STAFF, PICKUP),
    (State.PREPARING, State.CANCELLED): Move(_ANYONE),
    (State.OUT_FOR_DELIVERY, State.DELIVERED): Move(_STAFF),
    (State.READY_FOR_PICKUP, State.DELIVERED): Move(_STAFF),
    (State.DELIVERED, State.RATED): Move(_CUSTOMER),
}

FINAL = frozenset({State.RATED, State.CANCELLED})


def check(current: State, target: State, *, actor: Actor, method: str) -> None:
    """Raises FailedPrecondition naming both states unless ``actor`` may move an order
    fulfilled by ``method`` from ``current`` to ``target``."""
    move = TRANSITIONS.get((current, target))
    if move is None:
        raise FailedPrecondition(f"an order cannot go from {current} to {target}")
    if move.method is not None and move.method != method:
        raise FailedPrecondition(
            f"a {method} order cannot go from {current} to {target} (only {move.method} orders)"
        )
    if actor not in move.actors:
        raise FailedPrecondition(f"{actor} cannot move an order from {current} to {target}")


def allowed(current: State, target: State, *, actor: Actor, method: str) -> bool:
    try:
        check(current, target, actor=actor, method=method)
    except FailedPrecondition:
        return False
    return True
