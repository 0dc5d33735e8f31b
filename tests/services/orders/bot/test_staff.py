"""Staff move orders from WhatsApp in any shipped language; customers cannot."""

# The look-alike characters here (the multiplication sign, Arabic-Indic and fullwidth digits)
# are what customers type and what the bot writes.
# ruff: noqa: RUF001

from __future__ import annotations

import pytest

from tests.services.orders.bot.bot_testkit import CUSTOMER_NUMBER, PIZZERIA, STAFF_NUMBER, Chat
from wamesh_orders.bot.dialogue import Session, StaffMove
from wamesh_orders.bot.staff import is_staff_number

STAFF_HELP = (
    "To move an order, send its number and the new state, e.g. #1042 preparing. "
    "States: preparing, on the way, ready, delivered, cancelled."
)


def staff_chat() -> Chat:
    return Chat(PIZZERIA, Session(language="en", greeted=True), staff=True)


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("#1042 preparing", "preparing"),
        ("#1042 Preparing.", "preparing"),
        ("# 1042 on the way", "out_for_delivery"),
        ("#1042 out for delivery", "out_for_delivery"),
        ("#1042: ready", "ready_for_pickup"),
        ("#1042 ready for pickup", "ready_for_pickup"),
        ("#1042 delivered", "delivered"),
        ("#1042 cancel", "cancelled"),
        ("#1042 CANCELLED", "cancelled"),
        ("preparing #1042", "preparing"),
        ("#١٠٤٢ قيد التحضير", "preparing"),
        ("#۱۰۴۲ في الطريق", "out_for_delivery"),
        ("#1042 جاهز", "ready_for_pickup"),
        ("#1042 تم التوصيل", "delivered"),
        ("#1042 إلغاء", "cancelled"),
        ("#१०४२ तयारी", "preparing"),
        ("#१०४२ बाटोमा", "out_for_delivery"),
        ("#1042 तयार", "ready_for_pickup"),
        ("#1042 डेलिभर भयो", "delivered"),
        ("#1042 रद्द", "cancelled"),
    ],
)
def test_staff_move_orders_in_every_language(text: str, state: str) -> None:
    chat = staff_chat()
    before = chat.session

    turn = chat.send(text)

    assert turn.effects == (StaffMove(1042, state),)
    assert turn.replies == ()
    assert turn.session.lines == before.lines
    assert turn.session.stage is before.stage


@pytest.mark.parametrize("text", ["#1042 sleeping", "#1042", "#abc preparing", "#0 preparing"])
def test_a_staff_message_that_looks_like_a_move_but_is_not_gets_the_format(text: str) -> None:
    turn = staff_chat().send(text)

    assert turn.replies == (STAFF_HELP,)
    assert turn.effects == ()


@pytest.mark.parametrize("text", ["#1042 preparing", "#١٠٤٢ في الطريق", "#१०४२ तयारी"])
def test_from_a_customer_a_move_is_just_text(text: str) -> None:
    turn = Chat(PIZZERIA, Session(language="en", greeted=True)).send(text)

    assert turn.effects == ()
    assert len(turn.replies) == 1
    assert turn.session.lines == ()


def test_a_staff_member_can_still_order() -> None:
    chat = staff_chat()

    assert chat.send("2 x 1").replies == (
        "Added 2 × Margherita. Cart total: €17.00. "
        "Send checkout to order, or cart to see your cart.",
    )


def test_staff_numbers_are_recognised_with_or_without_twilios_prefix() -> None:
    assert is_staff_number(PIZZERIA, STAFF_NUMBER)
    assert is_staff_number(PIZZERIA, f"whatsapp:{STAFF_NUMBER}")
    assert is_staff_number(PIZZERIA, "+34 600 111 222")
    assert not is_staff_number(PIZZERIA, CUSTOMER_NUMBER)
