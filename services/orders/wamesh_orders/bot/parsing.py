"""How a customer asks for items (`2 x 3`, `3`, `2 margherita`, `margherita x2`) or takes a
line out (`remove 2`, `remove margherita`), read from normalised text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from wamesh_orders.bot.text import strip_symbols

# A run of more digits is no quantity or item number the bot allows, whatever its value; not
# converting it keeps a wall of digits cheap.
_MAX_DIGITS = 18
_TOO_MANY = 10**_MAX_DIGITS

_NUMBER = re.compile(r"[0-9]+")
_COUNT_OF_NUMBER = re.compile(r"([0-9]+)\s*[x\u00d7*]\s*([0-9]+)|([0-9]+)\s+([0-9]+)")
_COUNT_FIRST = re.compile(r"([0-9]+)\s*(\S.*)")
_SEPARATED = re.compile(r"[x\u00d7*]\s*(\S.*)")
_COUNT_LAST = re.compile(r"(.*\S)\s*[x\u00d7*]\s*([0-9]+)|(.*\S)\s+([0-9]+)")


@dataclass(frozen=True)
class ByNumber:
    """``quantity`` of the item numbered ``number`` on the shown menu."""

    quantity: int
    number: int


@dataclass(frozen=True)
class ByName:
    """Items by name: the ways to read the message as (quantity, name), likeliest first, and
    whether a quantity was written (then a name that matches nothing is still an order)."""

    readings: tuple[tuple[int, str], ...]
    counted: bool


@dataclass(frozen=True)
class RemoveLine:
    line: int


@dataclass(frozen=True)
class RemoveNamed:
    name: str


AddRequest = ByNumber | ByName
RemoveRequest = RemoveLine | RemoveNamed


def parse_add(normalised: str) -> AddRequest | None:
    """The items a message asks for, by number or by name; None for an empty message."""
    # Only the end: a leading `-` or `+` belongs to what the customer wrote (`-2 x 3`).
    text = strip_symbols(normalised, leading=False)
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        return ByNumber(1, count(text))
    pair = _COUNT_OF_NUMBER.fullmatch(text)
    if pair:
        quantity, number = (group for group in pair.groups() if group is not None)
        return ByNumber(count(quantity), count(number))
    counted = _counted_readings(text)
    return ByName((*counted, (1, text)), counted=bool(counted))


def parse_remove(normalised: str) -> RemoveRequest | None:
    """The line a ``remove`` asks to take out, from what follows the word."""
    text = strip_symbols(normalised)
    if not text:
        return None
    if _NUMBER.fullmatch(text):
        return RemoveLine(count(text))
    return RemoveNamed(text)


def count(digits: str) -> int:
    """The number the ASCII digits write, or a number too big for anything when they are many."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_DIGITS else _TOO_MANY


def _counted_readings(text: str) -> tuple[tuple[int, str], ...]:
    readings: list[tuple[int, str]] = []
    first = _COUNT_FIRST.fullmatch(text)
    if first:
        quantity, rest = count(first.group(1)), first.group(2)
        separated = _SEPARATED.fullmatch(rest)
        # `2 x margherita` names margherita, but `2 xl pizza` names xl pizza: try both.
        if separated:
            readings.append((quantity, separated.group(1)))
        readings.append((quantity, rest))
    last = _COUNT_LAST.fullmatch(text)
    if last:
        name, digits = (group for group in last.groups() if group is not None)
        readings.append((count(digits), name))
    return tuple(readings)
