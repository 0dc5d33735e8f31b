"""Whole conversations in Arabic: Arabic words, Arabic-Indic digits, replies from the Arabic
catalogue."""

# The look-alike characters here (the multiplication sign, Arabic-Indic and fullwidth digits)
# are what customers type and what the bot writes.
# ruff: noqa: RUF001

from __future__ import annotations

from tests.services.orders.bot.bot_testkit import PIZZERIA, SHAWARMA, Chat, greeted
from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.dialogue import CartLine, ConfirmOrder, Stage
from wamesh_orders.bot.money import format_price

CHICKEN = "شاورما دجاج"
FALAFEL = "فلافل"
TEA = "شاي"


def sar(minor: int) -> str:
    return format_price(minor, "SAR", "ar")


def menu() -> str:
    lines = [
        render("ar", "menu.line", number=1, name=CHICKEN, price=sar(1500)),
        render("ar", "menu.line", number=2, name=FALAFEL, price=sar(800)),
        render("ar", "menu.line", number=3, name=TEA, price=sar(300)),
    ]
    return "\n".join([render("ar", "menu.header"), *lines, render("ar", "menu.footer")])


def added(quantity: int, name: str, total: int) -> str:
    return render("ar", "add.done", quantity=quantity, name=name, total=sar(total))


def cart(*lines: tuple[int, str, int], total: int) -> str:
    rendered = [
        render("ar", "cart.line", line=number, quantity=quantity, name=name, price=sar(price))
        for number, (quantity, name, price) in enumerate(lines, start=1)
    ]
    return "\n".join(
        [
            render("ar", "cart.header"),
            *rendered,
            render("ar", "cart.total", total=sar(total)),
            render("ar", "cart.footer"),
        ]
    )


def test_from_greeting_to_a_confirmed_delivery_in_arabic() -> None:
    chat = Chat(SHAWARMA)

    assert chat.send("مرحبا").replies == ("أهلًا بكم في مطعم الشام!", menu())
    assert chat.session.language == "ar"
    assert chat.send("٢ x ١").replies == (added(2, CHICKEN, 3000),)
    assert chat.send("۲ فلافل").replies == (added(2, FALAFEL, 4600),)
    assert chat.send("فَلافِل").replies == (added(1, FALAFEL, 5400),)
    assert chat.send("٣").replies == (added(1, TEA, 5700),)
    assert chat.send("السلة").replies == (
        cart((2, CHICKEN, 3000), (3, FALAFEL, 2400), (1, TEA, 300), total=5700),
    )
    assert chat.send("حذف ٣").replies == (
        render("ar", "remove.done", quantity=1, name=TEA),
        cart((2, CHICKEN, 3000), (3, FALAFEL, 2400), total=5400),
    )
    assert chat.send("إتمام").replies == (render("ar", "method.ask"),)
    assert chat.send("توصيل").replies == (render("ar", "address.ask"),)
    assert chat.session.stage is Stage.AWAITING_ADDRESS
    assert chat.send("شارع الملك فهد ١٢، الرياض").replies == (
        "\n".join(
            [
                render("ar", "summary.header"),
                render("ar", "summary.line", quantity=2, name=CHICKEN, price=sar(3000)),
                render("ar", "summary.line", quantity=3, name=FALAFEL, price=sar(2400)),
                render("ar", "cart.total", total=sar(5400)),
                render("ar", "summary.delivery", address="شارع الملك فهد ١٢، الرياض"),
                render("ar", "confirm.ask"),
            ]
        ),
    )

    confirmed = chat.send("تأكيد")

    assert confirmed.replies == ()
    assert confirmed.effects == (
        ConfirmOrder(
            lines=(
                CartLine("sh-1", CHICKEN, 2, 1500, "SAR"),
                CartLine("sh-2", FALAFEL, 3, 800, "SAR"),
            ),
            method="delivery",
            address="شارع الملك فهد ١٢، الرياض",
            total_minor=5400,
            currency="SAR",
        ),
    )
    assert confirmed.language == "ar"
    assert chat.session.lines == ()


def test_the_arabic_replies_read_as_written() -> None:
    chat = greeted(SHAWARMA, "ar")

    assert chat.send("٢ x ١").replies == (
        "تمت إضافة 2 × شاورما دجاج. مجموع السلة: \u200f30.00\xa0ر.س.\u200f. "
        "أرسل «إتمام» للطلب أو «السلة» لرؤية سلتك.",
    )
    assert chat.send("القائمة").replies[0].startswith("القائمة:\n1. شاورما دجاج — ")


def test_pickup_in_arabic_with_hamza_left_out() -> None:
    chat = greeted(SHAWARMA, "ar")
    chat.send("اضف ١ شاي")
    chat.send("اتمام")

    assert chat.send("استلام").replies == (
        "\n".join(
            [
                render("ar", "summary.header"),
                render("ar", "summary.line", quantity=1, name=TEA, price=sar(300)),
                render("ar", "cart.total", total=sar(300)),
                render("ar", "summary.pickup"),
                render("ar", "confirm.ask"),
            ]
        ),
    )
    confirmed = chat.send("نعم")
    assert confirmed.effects == (
        ConfirmOrder(
            lines=(CartLine("sh-3", TEA, 1, 300, "SAR"),),
            method="pickup",
            address="",
            total_minor=300,
            currency="SAR",
        ),
    )


def test_an_arabic_customer_of_an_english_tenant_is_answered_in_arabic_and_stays_so() -> None:
    chat = greeted(PIZZERIA)

    assert chat.send("القائمة").language == "ar"
    assert chat.send("2 x 1").replies == (
        render(
            "ar", "add.done", quantity=2, name="Margherita", total=format_price(1700, "EUR", "ar")
        ),
    )
    assert chat.session.language == "ar"


def test_latin_text_to_an_arabic_tenant_is_answered_in_its_default() -> None:
    turn = greeted(SHAWARMA).send("menu")

    assert turn.language == "ar"
    assert turn.replies == (menu(),)
    assert turn.session.language is None


def test_arabic_did_you_mean() -> None:
    chat = greeted(SHAWARMA, "ar")

    assert chat.send("٢ فلافيل").replies == (
        render("ar", "add.did_you_mean", query="فلافيل", name=FALAFEL, example="2 x 2"),
    )
