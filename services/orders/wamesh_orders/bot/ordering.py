"""Putting items into the cart, taking lines out, and showing it."""

from __future__ import annotations

from dataclasses import replace

from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.menu import Reconciled, by_name, by_number, guess, reconcile, shown
from wamesh_orders.bot.model import (
    MAX_QUANTITY,
    MIN_QUANTITY,
    BotConfig,
    CartLine,
    MenuEntry,
    Session,
    Stage,
)
from wamesh_orders.bot.money import format_price
from wamesh_orders.bot.parsing import (
    ByName,
    ByNumber,
    RemoveLine,
    RemoveRequest,
    parse_add,
    parse_remove,
)
from wamesh_orders.bot.step import Kind, Step, say
from wamesh_orders.bot.text import clip, name_key
from wamesh_orders.bot.views import cart_text, total_price

# Enough of what the customer wrote to recognise it, never a wall of it.
QUERY_ECHO_CHARS = 40


def add_items(config: BotConfig, session: Session, body: str, language: str) -> Step | None:
    """The step for a message asking for items; None when it asks for nothing on the menu
    and names nothing like it (then it is not an order at all)."""
    request = parse_add(body)
    if request is None:
        return None
    if isinstance(request, ByNumber):
        return _add_numbered(config, session, request, language)
    return _add_named(config, session, request, language)


def remove_line(session: Session, rest: str, language: str) -> Step:
    request = parse_remove(rest)
    if request is None:
        return say(session, render(language, "remove.usage"))
    if not session.lines:
        return say(session, render(language, "cart.empty"))
    index = _line_index(session.lines, request)
    if index is None:
        return say(session, _no_such_line(request, language))
    removed = session.lines[index]
    lines = session.lines[:index] + session.lines[index + 1 :]
    done = render(language, "remove.done", quantity=removed.quantity, name=removed.name)
    return say(_cart_changed(session, lines), done, cart_text(lines, language))


def show_cart(config: BotConfig, session: Session, language: str) -> Step:
    reconciled = reconcile(config, session.lines)
    if reconciled.changed:
        session = _cart_changed(session, reconciled.lines)
    notices = change_notices(reconciled, language)
    return say(session, *notices, cart_text(session.lines, language))


def change_notices(reconciled: Reconciled, language: str) -> tuple[str, ...]:
    """What the customer is told when the menu changed under their cart."""
    dropped = [render(language, "cart.dropped", name=line.name) for line in reconciled.dropped]
    repriced = [
        render(
            language,
            "cart.repriced",
            name=line.name,
            price=format_price(line.unit_price_minor, line.currency, language),
        )
        for line in reconciled.repriced
    ]
    return (*dropped, *repriced)


def quantity_allowed(quantity: int) -> bool:
    return MIN_QUANTITY <= quantity <= MAX_QUANTITY


def _add_numbered(config: BotConfig, session: Session, request: ByNumber, language: str) -> Step:
    items = shown(config)
    if not items:
        return say(session, render(language, "menu.empty"))
    if not quantity_allowed(request.quantity):
        return _quantity_refused(session, language)
    entry = by_number(config, request.number)
    if entry is None:
        unknown = render(language, "add.unknown_number", number=request.number, count=len(items))
        return say(session, unknown)
    return _put(config, session, entry, request.quantity, language)


def _add_named(config: BotConfig, session: Session, request: ByName, language: str) -> Step | None:
    for quantity, name in request.readings:
        entry = by_name(config, name)
        if entry is None:
            continue
        if not quantity_allowed(quantity):
            return _quantity_refused(session, language)
        return _put(config, session, entry, quantity, language)
    quantity, name = request.readings[0]
    query = clip(name, QUERY_ECHO_CHARS)
    guessed = guess(config, name)
    if guessed is not None:
        example = f"{quantity if quantity_allowed(quantity) else MIN_QUANTITY} x {guessed.number}"
        reply = render(
            language, "add.did_you_mean", query=query, name=guessed.entry.name, example=example
        )
        return say(session, reply, kind=Kind.DONE if request.counted else Kind.GUESS)
    if request.counted:
        return say(session, render(language, "add.unknown_name", query=query))
    return None


def _put(
    config: BotConfig, session: Session, entry: MenuEntry, quantity: int, language: str
) -> Step:
    reconciled = reconcile(config, session.lines)
    lines = reconciled.lines
    # A cart holds one currency; the tenants service keeps menus to one, so this is a menu
    # changing currency under a cart.
    if not entry.available or (lines and lines[0].currency != entry.currency):
        return say(session, render(language, "add.unavailable", name=entry.name))
    held = sum(line.quantity for line in lines if line.menu_item_id == entry.id)
    if held + quantity > MAX_QUANTITY:
        refused = render(
            language, "add.line_limit", max=MAX_QUANTITY, name=entry.name, current=held
        )
        return say(session, refused)
    line = CartLine(entry.id, entry.name, held + quantity, entry.price_minor, entry.currency)
    others = tuple(kept for kept in lines if kept.menu_item_id != entry.id)
    updated = (*others, line) if not held else _in_place(lines, line)
    done = render(
        language,
        "add.done",
        quantity=quantity,
        name=entry.name,
        total=total_price(updated, language),
    )
    return say(_cart_changed(session, updated), *change_notices(reconciled, language), done)


def _in_place(lines: tuple[CartLine, ...], line: CartLine) -> tuple[CartLine, ...]:
    """The cart with the item's line replaced where it stood, so line numbers stay put."""
    index = next(i for i, held in enumerate(lines) if held.menu_item_id == line.menu_item_id)
    others = tuple(held for held in lines if held.menu_item_id != line.menu_item_id)
    return (*others[:index], line, *others[index:])


def _cart_changed(session: Session, lines: tuple[CartLine, ...]) -> Session:
    """A changed cart goes back to browsing: a checkout under way showed the old one."""
    return replace(session, lines=lines, stage=Stage.BROWSING, method=None, address="")


def _quantity_refused(session: Session, language: str) -> Step:
    reply = render(language, "add.quantity_range", min=MIN_QUANTITY, max=MAX_QUANTITY)
    return say(session, reply)


def _line_index(lines: tuple[CartLine, ...], request: RemoveRequest) -> int | None:
    if isinstance(request, RemoveLine):
        return request.line - 1 if 1 <= request.line <= len(lines) else None
    key = name_key(request.name)
    return next((i for i, line in enumerate(lines) if name_key(line.name) == key), None)


def _no_such_line(request: RemoveRequest, language: str) -> str:
    if isinstance(request, RemoveLine):
        return render(language, "remove.unknown_line", line=request.line)
    return render(language, "remove.unknown_name", name=clip(request.name, QUERY_ECHO_CHARS))
