"""The customer's answer to "how was your order?": a number, or stars, and the bot's thanks."""

from __future__ import annotations

import re

from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.model import BotConfig, LatestOrder
from wamesh_orders.bot.parsing import count
from wamesh_orders.bot.text import strip_symbols

MIN_STARS = 1
MAX_STARS = 5
# From here up the customer was happy: promotion; below, apology and support contact.
GOOD_FROM = 4
# The stars people type instead of a number.
_STAR_CHARS = frozenset("⭐★")
_NUMBER = re.compile(r"([0-9]+)(?:\s*/\s*5)?")


def stars_given(normalised: str) -> int | None:
    """The rating a message gives, in range or not (``7`` is 7); None when it gives none."""
    stars = sum(1 for char in normalised if char in _STAR_CHARS)
    if stars and all(char in _STAR_CHARS or char.isspace() for char in normalised):
        return stars
    number = _NUMBER.fullmatch(strip_symbols(normalised))
    return count(number.group(1)) if number else None


def is_rating(stars: int) -> bool:
    return MIN_STARS <= stars <= MAX_STARS


def rating_reply(config: BotConfig, order: LatestOrder, stars: int, language: str) -> str:
    """Thanks and the tenant's promotion for a good rating; its apology and where to reach
    it for a poor one."""
    if stars >= GOOD_FROM:
        thanks = render(language, "rating.thanks", number=order.number)
        return _lines(thanks, config.promo_text)
    apology = config.apology_text.strip() or render(language, "rating.sorry")
    contact = config.support_contact.strip()
    support = render(language, "rating.support", support=contact) if contact else ""
    return _lines(apology, support)


def _lines(*texts: str) -> str:
    return "\n".join(text.strip() for text in texts if text.strip())
