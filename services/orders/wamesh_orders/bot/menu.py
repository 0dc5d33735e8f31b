"""The menu as the customer sees it: available items numbered from 1 in menu order, found by
number or by name, and a cart held up against today's menu."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from wamesh_orders.bot.model import BotConfig, CartLine, MenuEntry
from wamesh_orders.bot.text import name_key

_GUESS_CUTOFF = 0.75
# Names are short; a longer query is a sentence, and comparing it would only cost time.
_MAX_GUESSABLE = 60


@dataclass(frozen=True)
class Numbered:
    """A menu item with its number on the menu the customer is shown."""

    number: int
    entry: MenuEntry


@dataclass(frozen=True)
class Reconciled:
    """A cart brought up to date with the menu: what is kept, dropped and now costs more or less."""

    lines: tuple[CartLine, ...]
    dropped: tuple[CartLine, ...]
    repriced: tuple[CartLine, ...]

    @property
    def changed(self) -> bool:
        return bool(self.dropped or self.repriced)


def shown(config: BotConfig) -> tuple[MenuEntry, ...]:
    """The items the customer can order, in menu order; item ``n`` is ``shown(config)[n - 1]``."""
    return tuple(entry for entry in config.menu if entry.available)


def by_number(config: BotConfig, number: int) -> MenuEntry | None:
    items = shown(config)
    return items[number - 1] if 1 <= number <= len(items) else None


def by_name(config: BotConfig, name: str) -> MenuEntry | None:
    """The item with that name, an available one first; unavailable ones too, so the reply
    can say so instead of not knowing it."""
    key = name_key(name)
    if not key:
        return None
    matches = [entry for entry in config.menu if name_key(entry.name) == key]
    matches.sort(key=lambda entry: not entry.available)
    return matches[0] if matches else None


def guess(config: BotConfig, name: str) -> Numbered | None:
    """The available item a misspelt or partial name most likely means, if any is likely."""
    key = name_key(name)
    if not 0 < len(key) <= _MAX_GUESSABLE:
        return None
    keys = [name_key(entry.name) for entry in shown(config)]
    close = difflib.get_close_matches(key, keys, n=1, cutoff=_GUESS_CUTOFF)
    if close:
        index = keys.index(close[0])
    else:
        # A word of exactly one item's name (`tiramisu` for `Tiramisu della Casa`).
        holding = [index for index, item in enumerate(keys) if key in item.split()]
        if len(holding) != 1:
            return None
        index = holding[0]
    return Numbered(index + 1, shown(config)[index])


def reconcile(config: BotConfig, lines: tuple[CartLine, ...]) -> Reconciled:
    """The cart at today's names and prices; lines of items gone, hidden, or priced in another
    currency than the cart's are dropped."""
    current = {entry.id: entry for entry in shown(config)}
    kept: list[CartLine] = []
    dropped: list[CartLine] = []
    repriced: list[CartLine] = []
    for line in lines:
        entry = current.get(line.menu_item_id)
        if entry is None or (kept and entry.currency != kept[0].currency):
            dropped.append(line)
            continue
        fresh = replace(
            line, name=entry.name, unit_price_minor=entry.price_minor, currency=entry.currency
        )
        if fresh.unit_price_minor != line.unit_price_minor or fresh.currency != line.currency:
            repriced.append(fresh)
        kept.append(fresh)
    return Reconciled(tuple(kept), tuple(dropped), tuple(repriced))
