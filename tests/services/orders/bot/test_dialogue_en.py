"""Whole conversations in English, reply by reply, as the customer reads them."""

# The look-alike characters here (the multiplication sign, Arabic-Indic and fullwidth digits)
# are what customers type and what the bot writes.
# ruff: noqa: RUF001

from __future__ import annotations

from tests.services.orders.bot.bot_testkit import PIZZERIA, Chat, greeted
from wamesh_orders.bot.dialogue import (
    AskStatus,
    CancelLatest,
    CartLine,
    ConfirmOrder,
    Session,
    Stage,
)

MENU = (
    "Menu:\n"
    "1. Margherita — €8.50\n"
    "2. Crème Brûlée — €4.50\n"
    "3. Coke (330ml) — €2.00\n"
    "To order, send the quantity and the item number (e.g. 2 x 1) or the item's name. "
    "Send help for all commands."
)
CART_FOOTER = (
    "Send checkout to order, or remove and a line number to take a line out (e.g. remove 1)."
)
MARGHERITA = CartLine("pz-1", "Margherita", 2, 850, "EUR")
BRULEE = CartLine("ds-1", "Crème Brûlée", 1, 450, "EUR")
COKE = CartLine("dr-1", "Coke (330ml)", 1, 200, "EUR")


def added(quantity: int, name: str, total: str) -> str:
    return (
        f"Added {quantity} × {name}. Cart total: {total}. "
        "Send checkout to order, or cart to see your cart."
    )


def test_from_greeting_to_a_confirmed_delivery() -> None:
    chat = Chat(PIZZERIA)

    assert chat.send("hi").replies == ("Welcome to Luigi's!", MENU)
    assert chat.send("2 x 1").replies == (added(2, "Margherita", "€17.00"),)
    assert chat.send("creme brulee").replies == (added(1, "Crème Brûlée", "€21.50"),)
    assert chat.send("3").replies == (added(1, "Coke (330ml)", "€23.50"),)
    assert chat.send("cart").replies == (
        "Your cart:\n"
        "1. 2 × Margherita — €17.00\n"
        "2. 1 × Crème Brûlée — €4.50\n"
        "3. 1 × Coke (330ml) — €2.00\n"
        "Total: €23.50\n" + CART_FOOTER,
    )
    assert chat.send("remove 3").replies == (
        "Removed 1 × Coke (330ml).",
        "Your cart:\n"
        "1. 2 × Margherita — €17.00\n"
        "2. 1 × Crème Brûlée — €4.50\n"
        "Total: €21.50\n" + CART_FOOTER,
    )
    choosing = chat.send("checkout")
    assert choosing.replies == ("Delivery or pickup? Reply 1 for delivery or 2 for pickup.",)
    assert choosing.session.stage is Stage.CHOOSING_METHOD
    addressing = chat.send("delivery")
    assert addressing.replies == ("Please send the delivery address.",)
    assert addressing.session.stage is Stage.AWAITING_ADDRESS
    confirming = chat.send("Calle Mayor 5, 2ºB")
    assert confirming.replies == (
        "Your order:\n"
        "2 × Margherita — €17.00\n"
        "1 × Crème Brûlée — €4.50\n"
        "Total: €21.50\n"
        "Delivery to: Calle Mayor 5, 2ºB\n"
        "Send confirm to place the order, or cancel to stop.",
    )
    assert confirming.session.stage is Stage.AWAITING_CONFIRMATION

    confirmed = chat.send("confirm")

    assert confirmed.replies == ()
    assert confirmed.effects == (
        ConfirmOrder(
            lines=(MARGHERITA, BRULEE),
            method="delivery",
            address="Calle Mayor 5, 2ºB",
            total_minor=2150,
            currency="EUR",
        ),
    )
    assert confirmed.session == Session(language=None, greeted=True)
    assert confirmed.language == "en"


def test_pickup_by_number_and_yes() -> None:
    chat = greeted(PIZZERIA)

    chat.send("Margherita x2")
    assert chat.send("checkout").replies == (
        "Delivery or pickup? Reply 1 for delivery or 2 for pickup.",
    )
    assert chat.send("2").replies == (
        "Your order:\n"
        "2 × Margherita — €17.00\n"
        "Total: €17.00\n"
        "Pickup\n"
        "Send confirm to place the order, or cancel to stop.",
    )

    confirmed = chat.send("Yes")

    assert confirmed.effects == (
        ConfirmOrder(
            lines=(MARGHERITA,), method="pickup", address="", total_minor=1700, currency="EUR"
        ),
    )
    assert chat.session.lines == ()
    assert chat.session.stage is Stage.BROWSING


def test_a_first_message_that_orders_is_greeted_and_then_done() -> None:
    chat = Chat(PIZZERIA)

    turn = chat.send("2 margherita")

    assert turn.replies == ("Welcome to Luigi's!", MENU, added(2, "Margherita", "€17.00"))
    assert turn.session.greeted


def test_a_first_message_not_understood_gets_the_greeting_and_menu_only() -> None:
    turn = Chat(PIZZERIA).send("good day to you")

    assert turn.replies == ("Welcome to Luigi's!", MENU)


def test_menu_hi_and_help_later_on() -> None:
    chat = greeted(PIZZERIA)

    assert chat.send("MENU").replies == (MENU,)
    assert chat.send("Hello!").replies == ("Welcome to Luigi's!", MENU)
    help_text = chat.send("help").replies
    assert len(help_text) == 1
    assert help_text[0].startswith("Here is what you can send:\nmenu — see the menu\n")


def test_an_item_by_name_is_added_to_its_line() -> None:
    chat = greeted(PIZZERIA)

    chat.send("1")
    turn = chat.send("add 3 margherita")

    assert turn.replies == (added(3, "Margherita", "€34.00"),)
    assert chat.session.lines == (CartLine("pz-1", "Margherita", 4, 850, "EUR"),)


def test_accents_either_way_find_the_same_item() -> None:
    for written in ("crème brûlée", "CREME BRULEE", "creme brulee", "Crème Brûlée!"):
        chat = greeted(PIZZERIA)
        assert chat.send(written).replies == (added(1, "Crème Brûlée", "€4.50"),)
        assert chat.session.lines == (BRULEE,)


def test_did_you_mean_for_a_misspelt_item() -> None:
    chat = greeted(PIZZERIA)

    assert chat.send("margarita").replies == (
        "I couldn't find “margarita”. Did you mean Margherita? Send 1 x 1 to add it.",
    )
    assert chat.send("2 margarita").replies == (
        "I couldn't find “margarita”. Did you mean Margherita? Send 2 x 1 to add it.",
    )
    assert chat.session.lines == ()


def test_did_you_mean_for_a_misspelt_command() -> None:
    assert greeted(PIZZERIA).send("chekout").replies == (
        "Sorry, I didn't understand that. Did you mean checkout?",
    )


def test_an_unavailable_item_by_name_is_refused() -> None:
    chat = greeted(PIZZERIA)

    assert chat.send("2 tiramisu").replies == ("Sorry, Tiramisu is not available right now.",)
    assert chat.session.lines == ()


def test_remove_by_name_and_mistakes_in_remove() -> None:
    chat = greeted(PIZZERIA)
    chat.send("1")
    chat.send("3")

    assert chat.send("remove").replies == (
        "To take a line out of your cart, send remove and its number, e.g. remove 1.",
    )
    assert chat.send("remove 5").replies == (
        "There is no line 5 in your cart. Send cart to see the line numbers.",
    )
    assert chat.send("remove pepsi").replies == (
        "There is no pepsi in your cart. Send cart to see what is in it.",
    )
    assert chat.send("delete coke (330ml)").replies[0] == "Removed 1 × Coke (330ml)."
    assert [line.menu_item_id for line in chat.session.lines] == ["pz-1"]


def test_checkout_with_an_empty_cart() -> None:
    chat = greeted(PIZZERIA)

    assert chat.send("checkout").replies == ("Your cart is empty. Send menu to see what we have.",)
    assert chat.session.stage is Stage.BROWSING


def test_confirm_before_checkout() -> None:
    chat = greeted(PIZZERIA)
    chat.send("1")

    assert chat.send("confirm").replies == (
        "There is nothing to confirm yet. Send checkout when your cart is ready.",
    )
    assert chat.send("confirm").effects == ()


def test_an_address_of_spaces_or_without_letters_is_refused() -> None:
    chat = greeted(PIZZERIA)
    chat.send("1")
    chat.send("checkout")
    chat.send("1")
    waiting = chat.session

    for address in ("     ", "\n\t", "12", "🏠"):
        assert chat.send(address).replies == (
            "Please send the delivery address in words: street, building and area.",
        )
        assert chat.session == waiting


def test_cancel_during_checkout_stops_the_checkout_and_keeps_the_cart() -> None:
    chat = greeted(PIZZERIA)
    chat.send("1")
    chat.send("checkout")

    turn = chat.send("cancel")

    assert turn.replies == (
        "Checkout stopped. Your cart is kept: send checkout when you are ready.",
    )
    assert turn.effects == ()
    assert chat.session.stage is Stage.BROWSING
    assert chat.session.lines == (CartLine("pz-1", "Margherita", 1, 850, "EUR"),)


def test_cancel_and_status_outside_checkout_are_for_the_latest_order() -> None:
    chat = greeted(PIZZERIA)

    cancelled = chat.send("cancel")
    status = chat.send("Status?")

    assert (cancelled.replies, cancelled.effects) == ((), (CancelLatest(),))
    assert (status.replies, status.effects) == ((), (AskStatus(),))


def test_adding_during_checkout_goes_back_to_browsing() -> None:
    chat = greeted(PIZZERIA)
    chat.send("1")
    chat.send("checkout")
    chat.send("pickup")

    chat.send("2 x 3")

    assert chat.session.stage is Stage.BROWSING
    assert chat.session.method is None
    assert chat.send("confirm").effects == ()


def test_unclear_answers_during_checkout_repeat_the_question() -> None:
    chat = greeted(PIZZERIA)
    chat.send("1")
    chat.send("checkout")

    assert chat.send("7").replies == (
        "Please reply 1 for delivery or 2 for pickup (or cancel to stop the checkout).",
    )
    assert chat.send("by drone please").replies == (
        "Please reply 1 for delivery or 2 for pickup (or cancel to stop the checkout).",
    )
    chat.send("pickup")
    assert chat.send("maybe later").replies == (
        "Send confirm to place the order, cancel to stop, or cart to look at it again.",
    )
    assert chat.session.stage is Stage.AWAITING_CONFIRMATION


def test_a_line_holds_at_most_ninety_nine() -> None:
    chat = greeted(PIZZERIA)
    chat.send("60 x 1")
    before = chat.session

    assert chat.send("50 x 1").replies == (
        "An order can hold at most 99 × Margherita; your cart already has 60.",
    )
    assert chat.session == before
    assert chat.send("39 x 1").replies == (added(39, "Margherita", "€841.50"),)
