"""Whatever a customer sends, the bot answers helpfully and the cart does not change."""

# The look-alike characters here (the multiplication sign, Arabic-Indic and fullwidth digits)
# are what customers type and what the bot writes.
# ruff: noqa: RUF001

from __future__ import annotations

import pytest

from tests.services.orders.bot.bot_testkit import PIZZERIA, Chat
from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.dialogue import MAX_INPUT_CHARS, CartLine, Session

WITH_A_CART = Session(
    language="en", greeted=True, lines=(CartLine("pz-1", "Margherita", 2, 850, "EUR"),)
)
QUANTITY_RANGE = "Please choose a quantity from 1 to 99."
NO_ITEM_9 = "There is no item 9 on the menu. Choose a number from 1 to 3, or send menu."
NO_TEXT = "I can only read text. Send menu to see the menu, or help for the commands."
UNKNOWN = "Sorry, I didn't understand that. Send menu to see the menu, or help for the commands."


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("0 x 1", QUANTITY_RANGE),
        ("10000 x 1", QUANTITY_RANGE),
        ("0 margherita", QUANTITY_RANGE),
        ("10000 margherita", QUANTITY_RANGE),
        ("9", NO_ITEM_9),
        ("2 x 9", NO_ITEM_9),
        ("0", "There is no item 0 on the menu. Choose a number from 1 to 3, or send menu."),
        ("", NO_TEXT),
        ("   ", NO_TEXT),
        ("🍕🍕🍕", NO_TEXT),
        ("👍🏽", NO_TEXT),
        ("❤️", NO_TEXT),
        ("?!", NO_TEXT),
        ("what is the wifi password", UNKNOWN),
        ("#1042 preparing", UNKNOWN),
        ("2 pepperoni", "I couldn't find “pepperoni” on the menu. Send menu to see what we have."),
    ],
)
def test_a_bad_message_gets_a_helpful_reply_and_changes_nothing(text: str, reply: str) -> None:
    chat = Chat(PIZZERIA, WITH_A_CART)

    turn = chat.send(text)

    assert turn.replies == (reply,)
    assert turn.effects == ()
    assert turn.session == WITH_A_CART


def test_a_bad_quantity_in_arabic_digits_is_refused_in_arabic() -> None:
    turn = Chat(PIZZERIA, WITH_A_CART).send("٠ x ١")

    assert turn.replies == ("الرجاء اختيار كمية من 1 إلى 99.",)
    assert turn.session.lines == WITH_A_CART.lines
    assert turn.session.language == "ar"


@pytest.mark.parametrize("size", [MAX_INPUT_CHARS + 1, 4000, 100_000])
def test_a_very_long_message_is_refused_without_being_echoed(size: int) -> None:
    turn = Chat(PIZZERIA, WITH_A_CART).send("2 x 1 " + "x" * size)

    assert turn.replies == (
        "That message is too long for me (over 1000 characters). Please send a shorter one.",
    )
    assert turn.session == WITH_A_CART


def test_a_long_item_name_is_not_echoed_whole() -> None:
    turn = Chat(PIZZERIA, WITH_A_CART).send("2 " + "q" * 900)

    assert turn.replies == (render("en", "add.unknown_name", query="q" * 39 + "…"),)


def test_a_wall_of_digits_is_no_quantity() -> None:
    turn = Chat(PIZZERIA, WITH_A_CART).send("9" * 900 + " x 1")

    assert turn.replies == (QUANTITY_RANGE,)
    assert turn.session == WITH_A_CART


def test_a_negative_quantity_is_no_order() -> None:
    turn = Chat(PIZZERIA, WITH_A_CART).send("-2 x 1")

    assert turn.effects == ()
    assert turn.session == WITH_A_CART
    assert turn.replies == (render("en", "add.unknown_name", query="-2"),)
