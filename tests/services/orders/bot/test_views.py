"""The longer messages: an order's summary for notices, and replies cut to WhatsApp's size."""

from __future__ import annotations

# The look-alike characters here (the multiplication sign) are what the bot writes.
# ruff: noqa: RUF001
from wamesh_orders.bot.dialogue import CartLine
from wamesh_orders.bot.views import order_summary, split_long

LINES = (CartLine("pz-1", "Margherita", 2, 850, "EUR"), CartLine("dr-1", "Coke", 1, 200, "EUR"))


def test_the_order_summary_the_notices_show() -> None:
    assert order_summary(LINES, "delivery", "Calle Mayor 5", "en") == (
        "2 × Margherita — €17.00\n1 × Coke — €2.00\nTotal: €19.00\nDelivery to: Calle Mayor 5"
    )
    assert order_summary(LINES, "pickup", "", "en").endswith("Total: €19.00\nPickup")


def test_a_short_reply_is_one_message() -> None:
    assert split_long("one\ntwo", limit=10) == ("one\ntwo",)


def test_a_long_reply_is_cut_between_lines() -> None:
    assert split_long("aaaa\nbbbb\ncccc", limit=9) == ("aaaa\nbbbb", "cccc")


def test_a_line_longer_than_a_message_is_cut_inside() -> None:
    assert split_long("ab\n" + "x" * 12, limit=5) == ("ab", "xxxxx", "xxxxx", "xx")
