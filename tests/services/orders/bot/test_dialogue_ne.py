"""Whole conversations in Nepali: Nepali words, Devanagari digits, replies from the Nepali
catalogue."""

# The look-alike characters here (the multiplication sign, Arabic-Indic and fullwidth digits)
# are what customers type and what the bot writes.
# ruff: noqa: RUF001

from __future__ import annotations

from tests.services.orders.bot.bot_testkit import MOMO, PIZZERIA, Chat, greeted
from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.dialogue import CartLine, ConfirmOrder, Stage
from wamesh_orders.bot.money import format_price

MOMOS = "मम"
CHOWMEIN = "चाउमिन"
LASSI = "लस्सी"


def npr(minor: int) -> str:
    return format_price(minor, "NPR", "ne")


def menu() -> str:
    lines = [
        render("ne", "menu.line", number=1, name=MOMOS, price=npr(15000)),
        render("ne", "menu.line", number=2, name=CHOWMEIN, price=npr(12000)),
        render("ne", "menu.line", number=3, name=LASSI, price=npr(8000)),
    ]
    return "\n".join([render("ne", "menu.header"), *lines, render("ne", "menu.footer")])


def added(quantity: int, name: str, total: int) -> str:
    return render("ne", "add.done", quantity=quantity, name=name, total=npr(total))


def summary(*lines: tuple[int, str, int], total: int, fulfilment: str) -> str:
    return "\n".join(
        [
            render("ne", "summary.header"),
            *(
                render("ne", "summary.line", quantity=quantity, name=name, price=npr(price))
                for quantity, name, price in lines
            ),
            render("ne", "cart.total", total=npr(total)),
            fulfilment,
            render("ne", "confirm.ask"),
        ]
    )


def test_from_greeting_to_a_confirmed_pickup_in_nepali() -> None:
    chat = Chat(MOMO)

    assert chat.send("नमस्ते").replies == ("काठमाडौं मम घरमा स्वागत छ!", menu())
    assert chat.send("२ x १").replies == (added(2, MOMOS, 30000),)
    assert chat.send("३ लस्सी").replies == (added(3, LASSI, 54000),)
    assert chat.send("चाउमिन").replies == (added(1, CHOWMEIN, 66000),)
    assert chat.send("कार्ट").replies == (
        "\n".join(
            [
                render("ne", "cart.header"),
                render("ne", "cart.line", line=1, quantity=2, name=MOMOS, price=npr(30000)),
                render("ne", "cart.line", line=2, quantity=3, name=LASSI, price=npr(24000)),
                render("ne", "cart.line", line=3, quantity=1, name=CHOWMEIN, price=npr(12000)),
                render("ne", "cart.total", total=npr(66000)),
                render("ne", "cart.footer"),
            ]
        ),
    )
    assert chat.send("हटाउ ३").replies[0] == render("ne", "remove.done", quantity=1, name=CHOWMEIN)
    assert chat.send("चेकआउट").replies == (render("ne", "method.ask"),)
    assert chat.send("पिकअप").replies == (
        summary(
            (2, MOMOS, 30000),
            (3, LASSI, 24000),
            total=54000,
            fulfilment=render("ne", "summary.pickup"),
        ),
    )

    confirmed = chat.send("पुष्टि")

    assert confirmed.effects == (
        ConfirmOrder(
            lines=(
                CartLine("mm-1", MOMOS, 2, 15000, "NPR"),
                CartLine("mm-3", LASSI, 3, 8000, "NPR"),
            ),
            method="pickup",
            address="",
            total_minor=54000,
            currency="NPR",
        ),
    )
    assert confirmed.language == "ne"
    assert chat.session.stage is Stage.BROWSING


def test_delivery_in_nepali_with_digits_for_the_choice() -> None:
    chat = greeted(MOMO, "ne")
    chat.send("थप १ मम")
    chat.send("चेकआउट")

    assert chat.send("१").replies == (render("ne", "address.ask"),)
    assert chat.send("ठमेल, काठमाडौं").replies == (
        summary(
            (1, MOMOS, 15000),
            total=15000,
            fulfilment=render("ne", "summary.delivery", address="ठमेल, काठमाडौं"),
        ),
    )
    assert chat.send("हो").effects == (
        ConfirmOrder(
            lines=(CartLine("mm-1", MOMOS, 1, 15000, "NPR"),),
            method="delivery",
            address="ठमेल, काठमाडौं",
            total_minor=15000,
            currency="NPR",
        ),
    )


def test_the_nepali_replies_read_as_written() -> None:
    chat = greeted(MOMO, "ne")

    assert chat.send("२ x १").replies == (
        "2 × मम थपियो। कार्टको जम्मा: नेरू\xa0300.00। अर्डर गर्न चेकआउट, वा कार्ट हेर्न कार्ट पठाउनुहोस्।",
    )


def test_a_nepali_customer_of_an_english_tenant_is_answered_in_nepali() -> None:
    chat = greeted(PIZZERIA)

    turn = chat.send("मेनु")

    assert turn.language == "ne"
    assert turn.replies[0].startswith("मेनु:\n1. Margherita — ")


def test_a_language_the_tenant_does_not_offer_is_not_taken_up() -> None:
    turn = greeted(MOMO).send("القائمة")

    assert turn.language == "ne"
    assert turn.session.language is None
    assert turn.replies == (menu(),)
