"""The bot's longer messages, put together from catalogue texts: the menu, the cart, an
order's summary. ``order_summary`` is also what staff and confirmation notices show."""

from __future__ import annotations

from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.menu import shown
from wamesh_orders.bot.model import DELIVERY, BotConfig, CartLine
from wamesh_orders.bot.money import format_price

# Twilio's limit on a WhatsApp body; a longer reply goes as several messages.
MAX_REPLY_CHARS = 1600


def menu_text(config: BotConfig, language: str) -> str:
    items = shown(config)
    if not items:
        return render(language, "menu.empty")
    lines = [
        render(
            language,
            "menu.line",
            number=number,
            name=item.name,
            price=format_price(item.price_minor, item.currency, language),
        )
        for number, item in enumerate(items, start=1)
    ]
    return "\n".join([render(language, "menu.header"), *lines, render(language, "menu.footer")])


def cart_text(lines: tuple[CartLine, ...], language: str) -> str:
    if not lines:
        return render(language, "cart.empty")
    numbered = [
        render(
            language,
            "cart.line",
            line=number,
            quantity=line.quantity,
            name=line.name,
            price=format_price(line.total_minor, line.currency, language),
        )
        for number, line in enumerate(lines, start=1)
    ]
    return "\n".join(
        [
            render(language, "cart.header"),
            *numbered,
            total_text(lines, language),
            render(language, "cart.footer"),
        ]
    )


def order_summary(
    lines: tuple[CartLine, ...], method: str | None, address: str, language: str
) -> str:
    """The order's lines, its total, and how it reaches the customer."""
    items = [
        render(
            language,
            "summary.line",
            quantity=line.quantity,
            name=line.name,
            price=format_price(line.total_minor, line.currency, language),
        )
        for line in lines
    ]
    fulfilment = (
        render(language, "summary.delivery", address=address)
        if method == DELIVERY
        else render(language, "summary.pickup")
    )
    return "\n".join([*items, total_text(lines, language), fulfilment])


def confirmation_text(
    lines: tuple[CartLine, ...], method: str | None, address: str, language: str
) -> str:
    return "\n".join(
        [
            render(language, "summary.header"),
            order_summary(lines, method, address, language),
            render(language, "confirm.ask"),
        ]
    )


def total_text(lines: tuple[CartLine, ...], language: str) -> str:
    return render(language, "cart.total", total=total_price(lines, language))


def total_price(lines: tuple[CartLine, ...], language: str) -> str:
    currency = lines[0].currency if lines else ""
    return format_price(sum(line.total_minor for line in lines), currency, language)


def split_long(reply: str, limit: int = MAX_REPLY_CHARS) -> tuple[str, ...]:
    """The reply as messages of at most ``limit`` characters, cut between lines when it can."""
    parts: list[str] = []
    current = ""
    for line in reply.split("\n"):
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            candidate = line
        current = candidate
    if current or not parts:
        parts.append(current)
    return tuple(parts)
