"""The menu changes under a cart: items go, hide or change price before checkout or confirm."""

# The look-alike characters here (the multiplication sign, Arabic-Indic and fullwidth digits)
# are what customers type and what the bot writes.
# ruff: noqa: RUF001

from __future__ import annotations

from dataclasses import replace

from tests.services.orders.bot.bot_testkit import PIZZERIA, Chat
from wamesh_orders.bot.dialogue import (
    BotConfig,
    CartLine,
    ConfirmOrder,
    MenuEntry,
    Session,
    Stage,
)
from wamesh_orders.bot.menu import by_name, by_number, guess, reconcile, shown

MARGHERITA = CartLine("pz-1", "Margherita", 2, 850, "EUR")
TIRAMISU = CartLine("ds-2", "Tiramisu", 1, 500, "EUR")
GONE = CartLine("old-1", "Calzone", 1, 900, "EUR")
SUMMARY = (
    "Your order:\n"
    "2 × Margherita — €17.00\n"
    "Total: €17.00\n"
    "Pickup\n"
    "Send confirm to place the order, or cancel to stop."
)


def at_confirmation(*lines: CartLine) -> Session:
    return Session(
        language="en",
        stage=Stage.AWAITING_CONFIRMATION,
        lines=lines,
        method="pickup",
        greeted=True,
    )


def test_only_available_items_are_numbered_in_menu_order() -> None:
    assert [entry.name for entry in shown(PIZZERIA)] == [
        "Margherita",
        "Crème Brûlée",
        "Coke (330ml)",
    ]
    assert by_number(PIZZERIA, 3) == PIZZERIA.menu[3]
    assert by_number(PIZZERIA, 4) is None
    assert by_number(PIZZERIA, 0) is None


def test_names_are_found_whatever_the_accents_and_unavailable_ones_too() -> None:
    assert by_name(PIZZERIA, "CRÈME brulee") == PIZZERIA.menu[1]
    assert by_name(PIZZERIA, "tiramisu") == PIZZERIA.menu[2]
    assert by_name(PIZZERIA, "calzone") is None


def test_guesses_by_spelling_or_by_a_word_of_one_name() -> None:
    margherita = guess(PIZZERIA, "margarita")
    coke = guess(PIZZERIA, "coke")

    assert margherita is not None
    assert (margherita.number, margherita.entry.name) == (1, "Margherita")
    assert coke is not None
    assert (coke.number, coke.entry.name) == (3, "Coke (330ml)")
    assert guess(PIZZERIA, "sushi") is None


def test_reconcile_drops_gone_and_hidden_items_and_reprices_the_rest() -> None:
    dearer = BotConfig(menu=(replace(PIZZERIA.menu[0], price_minor=900), *PIZZERIA.menu[1:]))

    reconciled = reconcile(dearer, (GONE, MARGHERITA, TIRAMISU))

    assert reconciled.lines == (replace(MARGHERITA, unit_price_minor=900),)
    assert reconciled.dropped == (GONE, TIRAMISU)
    assert reconciled.repriced == (replace(MARGHERITA, unit_price_minor=900),)
    assert reconciled.changed


def test_checkout_says_which_items_were_dropped() -> None:
    chat = Chat(PIZZERIA, Session(language="en", greeted=True, lines=(GONE, MARGHERITA, TIRAMISU)))

    assert chat.send("checkout").replies == (
        "Calzone is no longer available and was taken out of your cart.",
        "Tiramisu is no longer available and was taken out of your cart.",
        "Delivery or pickup? Reply 1 for delivery or 2 for pickup.",
    )
    assert chat.session.lines == (MARGHERITA,)


def test_confirm_after_an_item_went_shows_the_new_summary_instead() -> None:
    chat = Chat(PIZZERIA, at_confirmation(MARGHERITA, GONE))

    turn = chat.send("confirm")

    assert turn.effects == ()
    assert turn.replies == (
        "Calzone is no longer available and was taken out of your cart.",
        SUMMARY,
    )
    assert chat.session.stage is Stage.AWAITING_CONFIRMATION
    assert chat.send("confirm").effects == (ConfirmOrder((MARGHERITA,), "pickup", "", 1700, "EUR"),)


def test_confirm_after_a_price_change_shows_the_new_price_first() -> None:
    cheaper = BotConfig(menu=(replace(PIZZERIA.menu[0], price_minor=800),))
    chat = Chat(cheaper, at_confirmation(MARGHERITA))

    turn = chat.send("confirm")

    assert turn.effects == ()
    assert turn.replies[0] == "The price of Margherita is now €8.00."
    assert chat.send("confirm").effects == (
        ConfirmOrder((replace(MARGHERITA, unit_price_minor=800),), "pickup", "", 1600, "EUR"),
    )


def test_confirm_when_everything_went_empties_the_cart() -> None:
    chat = Chat(PIZZERIA, at_confirmation(GONE))

    turn = chat.send("confirm")

    assert turn.replies == (
        "Calzone is no longer available and was taken out of your cart.",
        "Your cart is empty. Send menu to see what we have.",
    )
    assert turn.session == Session(language="en", greeted=True)


def test_the_cart_shows_what_was_dropped() -> None:
    chat = Chat(PIZZERIA, Session(language="en", greeted=True, lines=(TIRAMISU,)))

    assert chat.send("cart").replies == (
        "Tiramisu is no longer available and was taken out of your cart.",
        "Your cart is empty. Send menu to see what we have.",
    )


def test_an_empty_menu() -> None:
    chat = Chat(BotConfig(menu=()), Session(greeted=True))

    nothing = "Sorry, nothing is available to order right now. Please try again later."
    assert chat.send("menu").replies == (nothing,)
    assert chat.send("1").replies == (nothing,)


def test_a_long_menu_goes_out_as_several_messages_within_whatsapps_limit() -> None:
    menu = tuple(
        MenuEntry(f"i{n}", f"Dish number {n} " + "with extras " * 5, 100, "EUR") for n in range(200)
    )
    turn = Chat(BotConfig(menu=menu), Session(greeted=True)).send("menu")

    assert len(turn.replies) > 1
    assert all(len(reply) <= 1600 for reply in turn.replies)
    assert "\n".join(turn.replies).count("\n") == 201
    assert turn.replies[0].startswith("Menu:\n1. Dish number 0 ")
