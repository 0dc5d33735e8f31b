"""The words the bot understands, in every shipped language at once: a customer may mix them,
and no word means two things (a test holds the catalogues to that)."""

from __future__ import annotations

import difflib
import functools
from enum import StrEnum

from wamesh_orders.bot.catalogue import LANGUAGES, word_list
from wamesh_orders.bot.text import normalise, strip_symbols

# Shorter guesses are too often wrong: a short word is close to too many others.
_MIN_GUESSABLE = 4
# Longer messages are sentences, not misspelt words; comparing them would only cost time.
_MAX_GUESSABLE = 40
_GUESS_CUTOFF = 0.8
STAFF_STATES = ("preparing", "out_for_delivery", "ready_for_pickup", "delivered", "cancelled")


class Command(StrEnum):
    """What a customer's message asks for, by the word it is (or starts with)."""

    GREET = "greet"
    MENU = "menu"
    CART = "cart"
    REMOVE = "remove"
    CHECKOUT = "checkout"
    DELIVERY = "delivery"
    PICKUP = "pickup"
    CONFIRM = "confirm"
    STATUS = "status"
    CANCEL = "cancel"
    HELP = "help"
    STOP = "stop"
    START = "start"
    ADD = "add"


def command_of(normalised: str) -> Command | None:
    """The command a whole message is (``"Menu!"`` is MENU), or None."""
    return _commands().get(strip_symbols(normalised))


def after_word(normalised: str, command: Command) -> str | None:
    """What follows one of the command's words at the start (``"remove 2"`` → ``"2"``)."""
    for word in _words_for(command):
        if normalised.startswith(f"{word} "):
            return normalised[len(word) + 1 :]
    return None


def guess_command(normalised: str) -> str | None:
    """The command word (as a catalogue writes it) a slightly misspelt message may mean."""
    bare = strip_symbols(normalised)
    if not _MIN_GUESSABLE <= len(bare) <= _MAX_GUESSABLE:
        return None
    written = _guessable()
    matches = difflib.get_close_matches(bare, list(written), n=1, cutoff=_GUESS_CUTOFF)
    return written[matches[0]] if matches else None


def staff_state_of(normalised: str) -> str | None:
    """The order state a staff member's word names (``"on the way"`` → out_for_delivery)."""
    return _staff_states().get(strip_symbols(normalised))


@functools.cache
def _commands() -> dict[str, Command]:
    table: dict[str, Command] = {}
    for language in LANGUAGES:
        for command in Command:
            for word in word_list(language, f"words.{command}"):
                table.setdefault(normalise(word), command)
    return table


@functools.cache
def _words_for(command: Command) -> tuple[str, ...]:
    # Longest first: when one word starts another, the longer one is the one meant.
    aliases = {word for word, named in _commands().items() if named is command}
    return tuple(sorted(aliases, key=len, reverse=True))


@functools.cache
def _guessable() -> dict[str, str]:
    """Normalised word → the word as written, for the commands that need nothing after them."""
    needs_more = {Command.ADD, Command.REMOVE}
    table: dict[str, str] = {}
    for language in LANGUAGES:
        for command in Command:
            if command in needs_more:
                continue
            for word in word_list(language, f"words.{command}"):
                table.setdefault(normalise(word), word)
    return table


@functools.cache
def _staff_states() -> dict[str, str]:
    table: dict[str, str] = {}
    for language in LANGUAGES:
        for state in STAFF_STATES:
            for word in word_list(language, f"staff_words.{state}"):
                table.setdefault(normalise(word), state)
    return table
