"""What a turn of the dialogue asks the orders service to do, and the turn itself.

The service applies a turn's effects in the same transaction that stores its session, then
sends its replies and renders the texts that depend on the outcome (``confirm.done``,
``cancel.done``, ``status.current``, ``opt_out.confirmed``, ``staff.moved``…)."""

from __future__ import annotations

from dataclasses import dataclass

from wamesh_orders.bot.model import CartLine, Session


@dataclass(frozen=True)
class ConfirmOrder:
    """Create the CONFIRMED order; the session's cart is already emptied."""

    lines: tuple[CartLine, ...]
    method: str
    address: str
    total_minor: int
    currency: str


@dataclass(frozen=True)
class CancelLatest:
    """Cancel the customer's latest order if its state still allows it."""


@dataclass(frozen=True)
class AskStatus:
    """Tell the customer the state of their latest order."""


@dataclass(frozen=True)
class Rate:
    """Rate the delivered order the dialogue was told of; the thanks are already in the replies."""

    stars: int


@dataclass(frozen=True)
class OptOut:
    """The customer said STOP: send them nothing more but the confirmation."""


@dataclass(frozen=True)
class OptIn:
    """The customer said START again."""


@dataclass(frozen=True)
class StaffMove:
    """A staff member moves order ``number`` to ``target_state`` (``"cancelled"`` included)."""

    number: int
    target_state: str


Effect = ConfirmOrder | CancelLatest | AskStatus | Rate | OptOut | OptIn | StaffMove


@dataclass(frozen=True)
class Turn:
    """The bot's answer to one message: the session to store, what to say (in ``language``,
    in order) and what to do."""

    session: Session
    replies: tuple[str, ...]
    effects: tuple[Effect, ...]
    language: str
