"""Tenants' bot settings for the tests, and a chat that carries the session between messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from wamesh_orders.bot.dialogue import (
    BotConfig,
    LatestOrder,
    MenuEntry,
    Session,
    Turn,
    respond,
)

STAFF_NUMBER = "+34600111222"
CUSTOMER_NUMBER = "+34600999888"

PIZZERIA = BotConfig(
    menu=(
        MenuEntry("pz-1", "Margherita", 850, "EUR"),
        MenuEntry("ds-1", "Crème Brûlée", 450, "EUR"),
        MenuEntry("ds-2", "Tiramisu", 500, "EUR", available=False),
        MenuEntry("dr-1", "Coke (330ml)", 200, "EUR"),
    ),
    greeting="Welcome to Luigi's!",
    promo_text="Show this for 10% off your next order: LUIGI10",
    apology_text="We are sorry, Luigi will make it right.",
    support_contact="+34 600 000 000",
    languages=("en", "ar", "ne"),
    default_language="en",
    staff_numbers=frozenset({STAFF_NUMBER}),
)

SHAWARMA = BotConfig(
    menu=(
        MenuEntry("sh-1", "شاورما دجاج", 1500, "SAR"),
        MenuEntry("sh-2", "فلافل", 800, "SAR"),
        MenuEntry("sh-3", "شاي", 300, "SAR"),
    ),
    greeting="أهلًا بكم في مطعم الشام!",
    promo_text="خصم 10% على طلبك القادم: SHAM10",
    apology_text="نعتذر منك.",
    support_contact="+966 500 000 000",
    languages=("ar", "en"),
    default_language="ar",
)

MOMO = BotConfig(
    menu=(
        MenuEntry("mm-1", "मम", 15000, "NPR"),
        MenuEntry("mm-2", "चाउमिन", 12000, "NPR"),
        MenuEntry("mm-3", "लस्सी", 8000, "NPR"),
    ),
    greeting="काठमाडौं मम घरमा स्वागत छ!",
    languages=("ne", "en"),
    default_language="ne",
)

DELIVERED = LatestOrder(number=1042, state="delivered")


@dataclass
class Chat:
    """One customer writing to one tenant's bot, message after message."""

    config: BotConfig
    session: Session = field(default_factory=Session.new)
    staff: bool = False
    awaiting_rating: LatestOrder | None = None
    turns: list[Turn] = field(default_factory=list)

    def send(self, text: str) -> Turn:
        turn = respond(
            self.config,
            self.session,
            text,
            from_staff=self.staff,
            awaiting_rating=self.awaiting_rating,
        )
        self.session = turn.session
        self.turns.append(turn)
        return turn


def greeted(config: BotConfig, language: str | None = None) -> Chat:
    """A chat past its greeting, in ``language`` if given."""
    return Chat(config, Session(language=language, greeted=True))
