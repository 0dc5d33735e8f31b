"""Staff moving an order from WhatsApp: `#1042 preparing`, in any shipped language and digits.
Only ever read for a configured staff number; from a customer it is just text."""

from __future__ import annotations

import re

from wamesh_orders.bot.effects import StaffMove
from wamesh_orders.bot.model import BotConfig
from wamesh_orders.bot.words import staff_state_of

# Beyond any order number a tenant reaches, and it keeps a wall of digits from being one.
_NUMBER_THEN_STATE = re.compile(r"#\s*([0-9]{1,12})\s*[:\-\u2013\u2014]?\s*(\S.*)")
_STATE_THEN_NUMBER = re.compile(r"(\S.*?)\s*[:\-\u2013\u2014]?\s*#\s*([0-9]{1,12})")


def staff_move(normalised: str) -> StaffMove | None:
    """The move a staff message asks for (``#1042 on the way`` or ``on the way #1042``)."""
    first = _NUMBER_THEN_STATE.fullmatch(normalised)
    if first:
        return _move(first.group(1), first.group(2))
    last = _STATE_THEN_NUMBER.fullmatch(normalised)
    if last:
        return _move(last.group(2), last.group(1))
    return None


def is_staff_number(config: BotConfig, number: str) -> bool:
    """Whether the sender is one of the tenant's staff numbers (Twilio's ``whatsapp:`` prefix
    and spaces aside), the only senders whose moves ``respond`` reads."""
    return _bare_number(number) in {_bare_number(staff) for staff in config.staff_numbers}


def looks_like_staff_command(normalised: str) -> bool:
    """Whether a staff message meant to move an order, so a mistake in it deserves the format."""
    return normalised.startswith("#")


def _move(digits: str, words: str) -> StaffMove | None:
    number = int(digits)
    state = staff_state_of(words)
    if state is None or number < 1:
        return None
    return StaffMove(number, state)


def _bare_number(number: str) -> str:
    return "".join(number.removeprefix("whatsapp:").split())
