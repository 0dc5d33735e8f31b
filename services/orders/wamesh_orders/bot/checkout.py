"""From a full cart to a confirmed order: delivery or pickup, the address, the summary, and
the customer's confirmation."""

from __future__ import annotations

from dataclasses import replace

from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.effects import CancelLatest, ConfirmOrder
from wamesh_orders.bot.menu import reconcile
from wamesh_orders.bot.model import DELIVERY, METHODS, PICKUP, BotConfig, Session, Stage
from wamesh_orders.bot.ordering import change_notices
from wamesh_orders.bot.step import Step, say
from wamesh_orders.bot.text import has_letters
from wamesh_orders.bot.views import confirmation_text


def checkout(config: BotConfig, session: Session, language: str) -> Step:
    reconciled = reconcile(config, session.lines)
    session = replace(session, lines=reconciled.lines, method=None, address="")
    return next_step(session, change_notices(reconciled, language), language)


def choose_method(config: BotConfig, session: Session, method: str, language: str) -> Step:
    reconciled = reconcile(config, session.lines)
    address = session.address if method == DELIVERY else ""
    session = replace(session, lines=reconciled.lines, method=method, address=address)
    return next_step(session, change_notices(reconciled, language), language)


def take_address(config: BotConfig, session: Session, text: str, language: str) -> Step:
    address = " ".join(text.split())
    if not has_letters(address):
        return say(session, render(language, "address.empty"))
    reconciled = reconcile(config, session.lines)
    session = replace(session, lines=reconciled.lines, address=address)
    return next_step(session, change_notices(reconciled, language), language)


def confirm(config: BotConfig, session: Session, language: str) -> Step:
    """The order to create, when the customer confirms exactly the summary they were shown;
    if the menu changed since, the new summary to confirm instead."""
    if session.stage is not Stage.AWAITING_CONFIRMATION:
        return say(session, render(language, "confirm.not_ready"))
    reconciled = reconcile(config, session.lines)
    session = replace(session, lines=reconciled.lines)
    method = session.method
    if reconciled.changed or method is None or not _complete(session):
        return next_step(session, change_notices(reconciled, language), language)
    lines = session.lines
    order = ConfirmOrder(
        lines=lines,
        method=method,
        address=session.address if method == DELIVERY else "",
        total_minor=sum(line.total_minor for line in lines),
        currency=lines[0].currency,
    )
    emptied = replace(session, lines=(), stage=Stage.BROWSING, method=None, address="")
    return Step(emptied, (), (order,))


def cancel(session: Session, language: str) -> Step:
    """Cancel during a checkout stops the checkout; otherwise it is the latest order's."""
    if session.stage is Stage.BROWSING:
        return Step(session, (), (CancelLatest(),))
    stopped = replace(session, stage=Stage.BROWSING, method=None, address="")
    return say(stopped, render(language, "checkout.abandoned"))


def next_step(session: Session, notices: tuple[str, ...], language: str) -> Step:
    """Whatever the checkout still lacks, asked for; the summary once nothing is lacking."""
    if not session.lines:
        browsing = replace(session, stage=Stage.BROWSING, method=None, address="")
        return say(browsing, *notices, render(language, "cart.empty"))
    if session.method not in METHODS:
        choosing = replace(session, stage=Stage.CHOOSING_METHOD, method=None)
        return say(choosing, *notices, render(language, "method.ask"))
    if session.method == DELIVERY and not session.address:
        asking = replace(session, stage=Stage.AWAITING_ADDRESS)
        return say(asking, *notices, render(language, "address.ask"))
    summary = confirmation_text(session.lines, session.method, session.address, language)
    return say(replace(session, stage=Stage.AWAITING_CONFIRMATION), *notices, summary)


def _complete(session: Session) -> bool:
    if not session.lines or session.method not in METHODS:
        return False
    return session.method == PICKUP or bool(session.address)
