"""The commands the bot knows, whole or at a message's start, and its guesses at misspellings."""

from __future__ import annotations

import pytest

from wamesh_orders.bot.text import normalise
from wamesh_orders.bot.words import Command, after_word, command_of, guess_command, staff_state_of


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("Menu!", Command.MENU),
        ("👋 hi", Command.GREET),
        ("Check out", Command.CHECKOUT),
        ("القائمة", Command.MENU),
        ("القائمه", Command.MENU),
        ("مُساعدة", Command.HELP),
        ("मेनु", Command.MENU),
        ("स्थिति?", Command.STATUS),
        ("menu please", None),
        ("", None),
    ],
)
def test_command_of(text: str, command: Command | None) -> None:
    assert command_of(normalise(text)) is command


def test_after_word() -> None:
    assert after_word("remove 2", Command.REMOVE) == "2"
    assert after_word("حذف 2", Command.REMOVE) == "2"
    assert after_word("removed 2", Command.REMOVE) is None


def test_guess_command() -> None:
    assert guess_command("chekout") == "checkout"
    assert guess_command("halp") is None
    assert guess_command("hii") is None
    assert guess_command("checkout " * 10) is None


def test_staff_state_of() -> None:
    assert staff_state_of(normalise("On the way!")) == "out_for_delivery"
    assert staff_state_of(normalise("في الطريق")) == "out_for_delivery"
    assert staff_state_of("sleeping") is None
