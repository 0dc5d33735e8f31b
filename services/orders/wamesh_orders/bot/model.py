"""What the bot works on: the tenant's settings and menu, the customer's cart and session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

DELIVERY = "delivery"
PICKUP = "pickup"
METHODS = (DELIVERY, PICKUP)
MIN_QUANTITY = 1
MAX_QUANTITY = 99
ORDER_STATES = (
    "draft",
    "confirmed",
    "preparing",
    "out_for_delivery",
    "ready_for_pickup",
    "delivered",
    "rated",
    "cancelled",
)

_T = TypeVar("_T")


@dataclass(frozen=True)
class MenuEntry:
    """One item of the tenant's menu, its price already in the currency's minor units."""

    id: str
    name: str
    price_minor: int
    currency: str
    available: bool = True


@dataclass(frozen=True)
class BotConfig:
    """The tenant's bot settings, already converted from the tenants service's."""

    menu: tuple[MenuEntry, ...]
    greeting: str = ""
    promo_text: str = ""
    apology_text: str = ""
    support_contact: str = ""
    # BCP 47 tags the bot answers in; empty means only the default language.
    languages: tuple[str, ...] = ()
    default_language: str = "en"
    staff_numbers: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class CartLine:
    """A quantity of one menu item, at the name and price it had when it was added."""

    menu_item_id: str
    name: str
    quantity: int
    unit_price_minor: int
    currency: str

    @property
    def total_minor(self) -> int:
        return self.quantity * self.unit_price_minor


class Stage(StrEnum):
    """Where the customer is on the way from browsing to a confirmed order."""

    BROWSING = "browsing"
    CHOOSING_METHOD = "choosing_method"
    AWAITING_ADDRESS = "awaiting_address"
    AWAITING_CONFIRMATION = "awaiting_confirmation"


@dataclass(frozen=True)
class Session:
    """What the bot remembers of one customer of one tenant between messages."""

    language: str | None = None
    stage: Stage = Stage.BROWSING
    lines: tuple[CartLine, ...] = ()
    method: str | None = None
    address: str = ""
    greeted: bool = False

    @classmethod
    def new(cls) -> Session:
        return cls()

    def to_json(self) -> dict[str, object]:
        return {
            "language": self.language,
            "stage": self.stage.value,
            "lines": [_line_to_json(line) for line in self.lines],
            "method": self.method,
            "address": self.address,
            "greeted": self.greeted,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Session:
        """The session ``to_json`` wrote; ValueError naming the field when data is not one."""
        method = _optional(data, "method", str)
        if method is not None and method not in METHODS:
            raise ValueError(f"session method must be one of {METHODS}, not {method!r}")
        try:
            stage = Stage(_required(data, "stage", str))
        except ValueError as error:
            raise ValueError(f"unknown session stage: {error}") from None
        return cls(
            language=_optional(data, "language", str),
            stage=stage,
            lines=tuple(_line_from_json(item) for item in _required(data, "lines", list)),
            method=method,
            address=_required(data, "address", str),
            greeted=_required(data, "greeted", bool),
        )


@dataclass(frozen=True)
class LatestOrder:
    """The customer's latest order, as far as the bot needs to know it."""

    number: int
    state: str


def _line_to_json(line: CartLine) -> dict[str, object]:
    return {
        "menu_item_id": line.menu_item_id,
        "name": line.name,
        "quantity": line.quantity,
        "unit_price_minor": line.unit_price_minor,
        "currency": line.currency,
    }


def _line_from_json(data: object) -> CartLine:
    if not isinstance(data, Mapping):
        raise ValueError(f"a cart line must be an object, not {type(data).__name__}")
    quantity = _required(data, "quantity", int)
    if not MIN_QUANTITY <= quantity <= MAX_QUANTITY:
        raise ValueError(f"a cart line's quantity must be {MIN_QUANTITY}..{MAX_QUANTITY}")
    return CartLine(
        menu_item_id=_required(data, "menu_item_id", str),
        name=_required(data, "name", str),
        quantity=quantity,
        unit_price_minor=_required(data, "unit_price_minor", int),
        currency=_required(data, "currency", str),
    )


def _required(data: Mapping[str, object], name: str, kind: type[_T]) -> _T:
    value = data.get(name)
    # bool is an int to isinstance, but never a quantity or a price.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"session field {name!r} must be {kind.__name__}, not {value!r}")
    return value


def _optional(data: Mapping[str, object], name: str, kind: type[_T]) -> _T | None:
    if data.get(name) is None:
        return None
    return _required(data, name, kind)
