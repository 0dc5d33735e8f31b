"""STOP and START in every language: an effect for the service to confirm, no reply of the bot's."""

from __future__ import annotations

import pytest

from tests.services.orders.bot.bot_testkit import DELIVERED, PIZZERIA, Chat
from wamesh_orders.bot.dialogue import CartLine, OptIn, OptOut, Session, Stage

MID_CHECKOUT = Session(
    language="en",
    stage=Stage.AWAITING_ADDRESS,
    lines=(CartLine("pz-1", "Margherita", 1, 850, "EUR"),),
    method="delivery",
    greeted=True,
)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("STOP", "en"),
        ("stop", "en"),
        ("Unsubscribe", "en"),
        ("إيقاف", "ar"),
        ("ايقاف", "ar"),
        ("توقف", "ar"),
        ("रोक", "ne"),
        ("बन्द", "ne"),
    ],
)
def test_stop(text: str, language: str) -> None:
    turn = Chat(PIZZERIA, MID_CHECKOUT).send(text)

    assert turn.effects == (OptOut(),)
    assert turn.replies == ()
    assert turn.language == language
    assert turn.session.lines == MID_CHECKOUT.lines
    assert turn.session.stage is Stage.AWAITING_ADDRESS


@pytest.mark.parametrize(
    ("text", "language"),
    [("START", "en"), ("start", "en"), ("ابدأ", "ar"), ("ابدا", "ar"), ("بدء", "ar"), ("सुरु", "ne")],
)
def test_start(text: str, language: str) -> None:
    turn = Chat(PIZZERIA, MID_CHECKOUT).send(text)

    assert turn.effects == (OptIn(),)
    assert turn.replies == ()
    assert turn.language == language


def test_a_first_message_stop_is_not_greeted() -> None:
    turn = Chat(PIZZERIA).send("STOP")

    assert turn.replies == ()
    assert turn.effects == (OptOut(),)
    assert not turn.session.greeted


def test_stop_beats_a_pending_rating() -> None:
    turn = Chat(PIZZERIA, Session(greeted=True), awaiting_rating=DELIVERED).send("stop")

    assert turn.effects == (OptOut(),)
