"""The ordering bot's dialogue: one customer message in; the replies, the session to keep and
the effects to apply out. Pure: the orders service loads, stores, sends and applies."""

from __future__ import annotations

from dataclasses import replace

from wamesh_orders.bot.catalogue import FALLBACK, render, supported
from wamesh_orders.bot.checkout import cancel, checkout, choose_method, confirm, take_address
from wamesh_orders.bot.effects import (
    AskStatus,
    CancelLatest,
    ConfirmOrder,
    Effect,
    OptIn,
    OptOut,
    Rate,
    StaffMove,
    Turn,
)
from wamesh_orders.bot.model import (
    DELIVERY,
    PICKUP,
    BotConfig,
    CartLine,
    LatestOrder,
    MenuEntry,
    Session,
    Stage,
)
from wamesh_orders.bot.ordering import add_items, remove_line, show_cart
from wamesh_orders.bot.rating import is_rating, rating_reply, stars_given
from wamesh_orders.bot.staff import looks_like_staff_command, staff_move
from wamesh_orders.bot.step import Kind, Step, say
from wamesh_orders.bot.text import has_word_chars, language_of, normalise, strip_symbols
from wamesh_orders.bot.views import menu_text, split_long
from wamesh_orders.bot.words import Command, after_word, command_of, guess_command

__all__ = [
    "MAX_INPUT_CHARS",
    "AskStatus",
    "BotConfig",
    "CancelLatest",
    "CartLine",
    "ConfirmOrder",
    "Effect",
    "LatestOrder",
    "MenuEntry",
    "OptIn",
    "OptOut",
    "Rate",
    "Session",
    "StaffMove",
    "Stage",
    "Turn",
    "offered_languages",
    "reply_language",
    "respond",
]

# Far beyond any order or address; a longer message is refused unread, so a wall of text
# costs no more than this much work.
MAX_INPUT_CHARS = 1000
_METHOD_DIGITS = {"1": DELIVERY, "2": PICKUP}


def respond(
    config: BotConfig,
    session: Session,
    text: str,
    *,
    from_staff: bool,
    awaiting_rating: LatestOrder | None,
) -> Turn:
    """The bot's turn for one message. ``awaiting_rating`` is the customer's latest order when
    it is delivered and not yet rated. Never raises, whatever the text."""
    session = _heard(config, session, text[:MAX_INPUT_CHARS])
    language = reply_language(config, session)
    step = _answer(config, session, text, from_staff, awaiting_rating, language)
    replies = tuple(part for reply in step.replies for part in split_long(reply) if part)
    return Turn(step.session, replies, step.effects, language)


def offered_languages(config: BotConfig) -> tuple[str, ...]:
    """The shipped languages the tenant answers in, its default language among them."""
    tags = (*config.languages, config.default_language)
    return tuple(dict.fromkeys(code for tag in tags if (code := supported(tag)) is not None))


def reply_language(config: BotConfig, session: Session) -> str:
    """The customer's language when the tenant offers it, else the tenant's default."""
    offered = offered_languages(config)
    if session.language is not None and session.language in offered:
        return session.language
    return supported(config.default_language) or (offered[0] if offered else FALLBACK)


def _heard(config: BotConfig, session: Session, text: str) -> Session:
    """The session in the language the text is written in, when that says anything."""
    heard = language_of(text)
    if heard is None or heard == session.language or heard not in offered_languages(config):
        return session
    return replace(session, language=heard)


def _answer(
    config: BotConfig,
    session: Session,
    text: str,
    from_staff: bool,
    awaiting_rating: LatestOrder | None,
    language: str,
) -> Step:
    if len(text) > MAX_INPUT_CHARS:
        return say(session, render(language, "input.too_long", limit=MAX_INPUT_CHARS))
    normalised = normalise(text)
    if from_staff and (staff := _staff_step(session, normalised, language)) is not None:
        return staff
    command = command_of(normalised)
    # Mid-checkout a digit answers the checkout's question, not the rating prompt.
    rating = awaiting_rating if session.stage is Stage.BROWSING else None
    if rating is not None and command is None:
        stars = stars_given(normalised)
        if stars is not None:
            return _rated(config, session, rating, stars, language)
    step = _converse(config, session, text, normalised, command, language)
    if rating is not None and step.kind is Kind.UNCLEAR:
        return say(step.session, render(language, "rating.range", number=rating.number))
    if not session.greeted:
        return _with_greeting(config, step, language)
    return step


def _staff_step(session: Session, normalised: str, language: str) -> Step | None:
    move = staff_move(normalised)
    if move is not None:
        return Step(session, (), (move,), Kind.QUIET)
    if looks_like_staff_command(normalised):
        return say(session, render(language, "staff.help"))
    return None


def _converse(
    config: BotConfig,
    session: Session,
    text: str,
    normalised: str,
    command: Command | None,
    language: str,
) -> Step:
    if not has_word_chars(normalised):
        if session.stage is Stage.AWAITING_ADDRESS:
            return say(session, render(language, "address.empty"))
        return say(session, render(language, "input.no_text"), kind=Kind.UNCLEAR)
    if command is not None:
        return _command(config, session, command, language)
    if session.stage is Stage.AWAITING_ADDRESS:
        return take_address(config, session, text, language)
    removal = after_word(normalised, Command.REMOVE)
    if removal is not None:
        return remove_line(session, removal, language)
    if session.stage is Stage.CHOOSING_METHOD:
        return _method_answer(config, session, normalised, language)
    added = add_items(config, session, after_word(normalised, Command.ADD) or normalised, language)
    return added if added is not None else _not_understood(session, normalised, language)


def _command(config: BotConfig, session: Session, command: Command, language: str) -> Step:
    match command:
        case Command.GREET:
            greeting = _greeting(config, language)
            return say(session, greeting, menu_text(config, language), kind=Kind.GREETED)
        case Command.MENU:
            return say(session, menu_text(config, language), kind=Kind.MENU)
        case Command.CART:
            return show_cart(config, session, language)
        case Command.REMOVE:
            return say(session, render(language, "remove.usage"))
        case Command.CHECKOUT:
            return checkout(config, session, language)
        case Command.DELIVERY:
            return choose_method(config, session, DELIVERY, language)
        case Command.PICKUP:
            return choose_method(config, session, PICKUP, language)
        case Command.CONFIRM:
            return confirm(config, session, language)
        case Command.STATUS:
            return Step(session, (), (AskStatus(),))
        case Command.CANCEL:
            return cancel(session, language)
        case Command.HELP:
            return say(session, render(language, "help.text"))
        case Command.STOP:
            return Step(session, (), (OptOut(),), Kind.QUIET)
        case Command.START:
            return Step(session, (), (OptIn(),), Kind.QUIET)
        case Command.ADD:
            return say(session, render(language, "menu.footer"))


def _method_answer(config: BotConfig, session: Session, normalised: str, language: str) -> Step:
    bare = strip_symbols(normalised)
    method = _METHOD_DIGITS.get(bare)
    if method is not None:
        return choose_method(config, session, method, language)
    if bare.isdigit():
        return say(session, render(language, "method.unclear"), kind=Kind.UNCLEAR)
    added = add_items(config, session, after_word(normalised, Command.ADD) or normalised, language)
    return added if added is not None else _not_understood(session, normalised, language)


def _not_understood(session: Session, normalised: str, language: str) -> Step:
    if session.stage is Stage.CHOOSING_METHOD:
        return say(session, render(language, "method.unclear"), kind=Kind.UNCLEAR)
    if session.stage is Stage.AWAITING_CONFIRMATION:
        return say(session, render(language, "confirm.unclear"), kind=Kind.UNCLEAR)
    word = guess_command(normalised)
    if word is not None:
        return say(session, render(language, "unknown.did_you_mean", word=word), kind=Kind.GUESS)
    return say(session, render(language, "unknown.text"), kind=Kind.UNCLEAR)


def _rated(
    config: BotConfig, session: Session, order: LatestOrder, stars: int, language: str
) -> Step:
    if not is_rating(stars):
        return say(session, render(language, "rating.range", number=order.number))
    return Step(session, (rating_reply(config, order, stars, language),), (Rate(stars),))


def _with_greeting(config: BotConfig, step: Step, language: str) -> Step:
    """A first message is greeted with the menu, before whatever else it asked for."""
    if step.kind is Kind.QUIET:
        return step
    session = replace(step.session, greeted=True)
    greeting = _greeting(config, language)
    match step.kind:
        case Kind.GREETED:
            replies = step.replies
        case Kind.MENU:
            replies = (greeting, *step.replies)
        case Kind.UNCLEAR:
            replies = (greeting, menu_text(config, language))
        case Kind.DONE | Kind.GUESS:
            replies = (greeting, menu_text(config, language), *step.replies)
    return Step(session, replies, step.effects, step.kind)


def _greeting(config: BotConfig, language: str) -> str:
    return config.greeting.strip() or render(language, "greeting.default")
