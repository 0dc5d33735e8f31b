"""After delivery: a number from 1 to 5 (in any script, or as stars) rates the order."""

# The look-alike characters here (the multiplication sign, Arabic-Indic and fullwidth digits)
# are what customers type and what the bot writes.
# ruff: noqa: RUF001

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.services.orders.bot.bot_testkit import DELIVERED, PIZZERIA, SHAWARMA, Chat
from wamesh_orders.bot.dialogue import BotConfig, CartLine, Rate, Session, Stage
from wamesh_orders.bot.rating import rating_reply

HAPPY = "Thank you for rating order #1042!\nShow this for 10% off your next order: LUIGI10"
SORRY = "We are sorry, Luigi will make it right.\nYou can reach us at +34 600 000 000."
RANGE = "Please rate order #1042 with a number from 1 to 5."
BROWSING = Session(language="en", greeted=True)
MARGHERITA = CartLine("pz-1", "Margherita", 1, 850, "EUR")


def rating_chat(config: BotConfig = PIZZERIA, session: Session = BROWSING) -> Chat:
    return Chat(config, session, awaiting_rating=DELIVERED)


@pytest.mark.parametrize(
    ("text", "stars", "reply"),
    [
        ("5", 5, HAPPY),
        ("4", 4, HAPPY),
        ("3", 3, SORRY),
        ("2", 2, SORRY),
        ("1", 1, SORRY),
        ("5!", 5, HAPPY),
        ("4/5", 4, HAPPY),
        ("⭐⭐⭐⭐⭐", 5, HAPPY),
        ("⭐️⭐️", 2, SORRY),
    ],
)
def test_a_rating_from_one_to_five(text: str, stars: int, reply: str) -> None:
    turn = rating_chat().send(text)

    assert turn.effects == (Rate(stars),)
    assert turn.replies == (reply,)
    assert turn.session == BROWSING


@pytest.mark.parametrize(
    ("text", "stars", "language"), [("٥", 5, "ar"), ("۴", 4, "ar"), ("३", 3, "ne"), ("१", 1, "ne")]
)
def test_ratings_in_other_scripts_are_answered_in_that_language(
    text: str, stars: int, language: str
) -> None:
    turn = rating_chat().send(text)

    assert turn.effects == (Rate(stars),)
    assert turn.language == language
    assert turn.replies == (rating_reply(PIZZERIA, DELIVERED, stars, language),)


def test_the_rating_replies_in_arabic_and_nepali() -> None:
    assert rating_reply(PIZZERIA, DELIVERED, 5, "ar") == (
        "شكرًا لتقييمك الطلب رقم 1042!\nShow this for 10% off your next order: LUIGI10"
    )
    assert rating_reply(PIZZERIA, DELIVERED, 1, "ne") == (
        "We are sorry, Luigi will make it right.\nहामीलाई +34 600 000 000 मा सम्पर्क गर्न सक्नुहुन्छ।"
    )


@pytest.mark.parametrize("text", ["7", "0", "10000", "great", "good job", "🙂"])
def test_anything_else_that_is_no_command_asks_for_a_number_from_one_to_five(text: str) -> None:
    turn = rating_chat().send(text)

    assert turn.effects == ()
    assert turn.replies == (RANGE,)


def test_commands_still_work_while_a_rating_is_awaited() -> None:
    chat = rating_chat()

    assert chat.send("menu").replies[0].startswith("Menu:\n1. Margherita")
    assert chat.send("2 x 1").replies[0].startswith("Added 2 × Margherita.")
    assert chat.send("margherita").effects == ()


def test_mid_checkout_a_digit_answers_the_checkout() -> None:
    session = replace(BROWSING, stage=Stage.CHOOSING_METHOD, lines=(MARGHERITA,))

    chosen = rating_chat(session=session).send("1")
    unclear = rating_chat(session=session).send("7")

    assert chosen.effects == ()
    assert chosen.session.method == "delivery"
    assert unclear.replies == (
        "Please reply 1 for delivery or 2 for pickup (or cancel to stop the checkout).",
    )


def test_without_a_delivered_order_a_digit_is_an_item() -> None:
    turn = Chat(PIZZERIA, BROWSING).send("5")

    assert turn.effects == ()
    assert turn.replies == (
        "There is no item 5 on the menu. Choose a number from 1 to 3, or send menu.",
    )


def test_without_tenant_texts_the_catalogue_thanks_and_apologises() -> None:
    plain = BotConfig(menu=PIZZERIA.menu)

    assert rating_chat(plain).send("5").replies == ("Thank you for rating order #1042!",)
    assert rating_chat(plain).send("1").replies == (
        "We're sorry your order was not what you hoped for.",
    )


def test_an_arabic_tenant_thanks_in_arabic() -> None:
    turn = rating_chat(SHAWARMA, Session(greeted=True)).send("5")

    assert turn.replies == ("شكرًا لتقييمك الطلب رقم 1042!\nخصم 10% على طلبك القادم: SHAM10",)
