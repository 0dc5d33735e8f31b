"""How a message that asks for items, or to take a line out, is read."""

from __future__ import annotations

# The look-alike characters here (the multiplication sign) are what customers type.
# ruff: noqa: RUF001
import pytest

from tests.services.orders.bot.bot_testkit import greeted
from wamesh_orders.bot.dialogue import BotConfig, CartLine, MenuEntry
from wamesh_orders.bot.parsing import (
    AddRequest,
    ByName,
    ByNumber,
    RemoveLine,
    RemoveNamed,
    count,
    parse_add,
    parse_remove,
)


@pytest.mark.parametrize(
    ("text", "request_"),
    [
        ("3", ByNumber(1, 3)),
        ("2 x 3", ByNumber(2, 3)),
        ("2x3", ByNumber(2, 3)),
        ("2 × 3", ByNumber(2, 3)),
        ("2*3", ByNumber(2, 3)),
        ("2 3", ByNumber(2, 3)),
        ("2 x 3!", ByNumber(2, 3)),
        ("2 margherita", ByName(((2, "margherita"), (1, "2 margherita")), counted=True)),
        (
            "2 x margherita",
            ByName(((2, "margherita"), (2, "x margherita"), (1, "2 x margherita")), counted=True),
        ),
        ("margherita x2", ByName(((2, "margherita"), (1, "margherita x2")), counted=True)),
        ("margherita 2", ByName(((2, "margherita"), (1, "margherita 2")), counted=True)),
        ("margherita", ByName(((1, "margherita"),), counted=False)),
        ("", None),
        ("!!", None),
    ],
)
def test_parse_add(text: str, request_: AddRequest | None) -> None:
    assert parse_add(text) == request_


def test_parse_remove() -> None:
    assert parse_remove("2") == RemoveLine(2)
    assert parse_remove("coke.") == RemoveNamed("coke")
    assert parse_remove(" ") is None


def test_count_strips_leading_zeros_and_caps_walls_of_digits() -> None:
    assert count("0000012") == 12
    assert count("0") == 0
    assert count("9" * 30) == 10**18


def test_names_that_start_with_a_digit_or_an_x() -> None:
    config = BotConfig(
        menu=(MenuEntry("up", "7up", 150, "EUR"), MenuEntry("xl", "XL Pizza", 1200, "EUR"))
    )
    chat = greeted(config)

    chat.send("7up")
    chat.send("2 7up")
    chat.send("2 xl pizza")
    chat.send("1 x XL pizza")

    assert chat.session.lines == (
        CartLine("up", "7up", 3, 150, "EUR"),
        CartLine("xl", "XL Pizza", 3, 1200, "EUR"),
    )
