"""Properties over any text, any tenant and any session: the bot always answers, never
raises, and keeps the session consistent."""

# The look-alike characters here (Arabic-Indic digits) are what customers type.
# ruff: noqa: RUF001

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.services.orders.bot.bot_testkit import PIZZERIA
from wamesh_orders.bot.catalogue import LANGUAGES
from wamesh_orders.bot.dialogue import (
    BotConfig,
    CartLine,
    ConfirmOrder,
    LatestOrder,
    MenuEntry,
    Session,
    Stage,
    Turn,
    respond,
)
from wamesh_orders.bot.views import MAX_REPLY_CHARS

NAMES = ["Margherita", "Crème Brûlée", "Coke (330ml)", "7up", "XL Pizza", "فلافل", "मम", "Tea"]
DIGITS = {
    "ascii": "0123456789",
    "arabic": "٠١٢٣٤٥٦٧٨٩",
    "persian": "۰۱۲۳۴۵۶۷۸۹",
    "devanagari": "०१२३४५६७८९",
}
WORDS = [
    "hi", "menu", "cart", "checkout", "delivery", "pickup", "1", "2", "3", "confirm", "yes",
    "cancel", "status", "help", "remove 1", "remove 9", "2 x 1", "99 x 2", "margherita",
    "2 margarita", "Calle Mayor 5", "STOP", "START", "#1042 preparing", "5", "7", "great",
    "القائمة", "٢ x ١", "إتمام", "توصيل", "تأكيد", "मेनु", "२ x १", "चेकआउट", "पिकअप", "पुष्टि",
    "", "   ", "🍕", "x" * 1500,
]  # fmt: skip


@st.composite
def configs(draw: st.DrawFn) -> BotConfig:
    currency = draw(st.sampled_from(["EUR", "JPY", "KWD", "SAR", "NPR"]))
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    menu = tuple(
        MenuEntry(
            id=f"item-{index}",
            name=name,
            price_minor=draw(st.integers(min_value=0, max_value=10**7)),
            currency=currency,
            available=draw(st.booleans()),
        )
        for index, name in enumerate(names)
    )
    return BotConfig(
        menu=menu,
        greeting=draw(st.sampled_from(["", "Welcome!", "{not a placeholder}"])),
        promo_text=draw(st.sampled_from(["", "10% off"])),
        apology_text=draw(st.sampled_from(["", "Sorry"])),
        support_contact=draw(st.sampled_from(["", "+34 600 000 000"])),
        languages=tuple(draw(st.lists(st.sampled_from(["en", "ar", "ne", "fr", "ar-EG"])))),
        default_language=draw(st.sampled_from(["en", "ar", "ne", "fr", ""])),
    )


@st.composite
def sessions(draw: st.DrawFn, config: BotConfig) -> Session:
    entries = (
        draw(st.lists(st.sampled_from(config.menu), unique_by=lambda entry: entry.id))
        if config.menu
        else []
    )
    lines = tuple(
        CartLine(
            entry.id,
            entry.name,
            draw(st.integers(min_value=1, max_value=99)),
            draw(st.sampled_from([entry.price_minor, entry.price_minor + 100])),
            entry.currency,
        )
        for entry in entries
    )
    stage = draw(st.sampled_from(Stage)) if lines else Stage.BROWSING
    method = {
        Stage.BROWSING: None,
        Stage.CHOOSING_METHOD: None,
        Stage.AWAITING_ADDRESS: "delivery",
        Stage.AWAITING_CONFIRMATION: draw(st.sampled_from(["delivery", "pickup"])),
    }[stage]
    address = (
        "Calle Mayor 5" if stage is Stage.AWAITING_CONFIRMATION and method == "delivery" else ""
    )
    return Session(
        language=draw(st.sampled_from([None, "en", "ar", "ne"])),
        stage=stage,
        lines=lines,
        method=method,
        address=address,
        greeted=draw(st.booleans()),
    )


texts = st.one_of(
    st.text(max_size=80),
    st.sampled_from(WORDS),
    st.builds(
        lambda quantity, number: f"{quantity} x {number}",
        st.integers(min_value=-5, max_value=200),
        st.integers(min_value=-1, max_value=12),
    ),
    st.builds(lambda word, tail: f"{word} {tail}", st.sampled_from(WORDS), st.text(max_size=20)),
)
ratings = st.one_of(st.none(), st.just(LatestOrder(1042, "delivered")))


def assert_consistent(config: BotConfig, turn: Turn) -> None:
    session = turn.session
    menu_ids = {entry.id for entry in config.menu}
    assert turn.language in LANGUAGES
    assert turn.replies or turn.effects, "the bot never stays silent"
    assert all(reply and len(reply) <= MAX_REPLY_CHARS for reply in turn.replies)
    assert all(1 <= line.quantity <= 99 for line in session.lines)
    assert {line.menu_item_id for line in session.lines} <= menu_ids
    assert len({line.menu_item_id for line in session.lines}) == len(session.lines)
    if session.stage is not Stage.BROWSING:
        assert session.lines
    if session.stage is Stage.AWAITING_ADDRESS:
        assert session.method == "delivery"
    if session.stage is Stage.AWAITING_CONFIRMATION:
        assert session.method in ("delivery", "pickup")
        assert session.method == "pickup" or session.address.strip()
    for effect in turn.effects:
        if isinstance(effect, ConfirmOrder):
            assert_confirmable(config, effect)
            assert session.lines == ()
            assert session.stage is Stage.BROWSING


def assert_confirmable(config: BotConfig, order: ConfirmOrder) -> None:
    prices = {entry.id: entry.price_minor for entry in config.menu if entry.available}
    assert order.lines
    assert all(prices[line.menu_item_id] == line.unit_price_minor for line in order.lines)
    assert order.total_minor == sum(line.quantity * line.unit_price_minor for line in order.lines)
    assert {line.currency for line in order.lines} == {order.currency}
    assert (order.method, bool(order.address)) in (("delivery", True), ("pickup", False))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), config=configs(), text=texts, staff=st.booleans(), rating=ratings)
def test_any_text_in_any_state_gets_an_answer_and_a_consistent_session(
    data: st.DataObject, config: BotConfig, text: str, staff: bool, rating: LatestOrder | None
) -> None:
    session = data.draw(sessions(config))

    turn = respond(config, session, text, from_staff=staff, awaiting_rating=rating)

    assert_consistent(config, turn)


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    config=configs(),
    messages=st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=20)), max_size=12),
)
def test_any_conversation_keeps_the_session_consistent(
    data: st.DataObject, config: BotConfig, messages: list[str]
) -> None:
    session = data.draw(sessions(config))
    for text in messages:
        turn = respond(config, session, text, from_staff=False, awaiting_rating=None)
        assert_consistent(config, turn)
        session = Session.from_json(turn.session.to_json())


def written_in(script: str, number: int) -> str:
    return "".join(DIGITS[script][int(digit)] for digit in str(number))


@given(
    quantity=st.integers(min_value=0, max_value=120),
    number=st.integers(min_value=0, max_value=5),
    script=st.sampled_from(sorted(DIGITS)),
)
def test_digits_of_every_script_order_like_ascii(quantity: int, number: int, script: str) -> None:
    session = Session(language="en", greeted=True)
    ascii_text = f"{quantity} x {number}"
    other_text = f"{written_in(script, quantity)} x {written_in(script, number)}"

    ascii_turn = respond(PIZZERIA, session, ascii_text, from_staff=False, awaiting_rating=None)
    other_turn = respond(PIZZERIA, session, other_text, from_staff=False, awaiting_rating=None)

    assert other_turn.session.lines == ascii_turn.session.lines
    assert other_turn.effects == ascii_turn.effects
    assert replace(other_turn.session, language="en") == ascii_turn.session
    if 1 <= quantity <= 99 and 1 <= number <= 3:
        assert other_turn.session.lines[0].quantity == quantity


any_lines = st.builds(
    CartLine,
    menu_item_id=st.sampled_from(["item-0", "item-1", "gone", ""]),
    name=st.text(max_size=15),
    quantity=st.integers(min_value=1, max_value=99),
    unit_price_minor=st.integers(min_value=-(10**6), max_value=10**9),
    currency=st.sampled_from(["EUR", "JPY", "XXX", ""]),
)
any_sessions = st.builds(
    Session,
    language=st.one_of(st.none(), st.text(max_size=5), st.sampled_from(LANGUAGES)),
    stage=st.sampled_from(Stage),
    lines=st.lists(any_lines, max_size=4).map(tuple),
    method=st.one_of(st.none(), st.sampled_from(["delivery", "pickup", "drone"])),
    address=st.text(max_size=20),
    greeted=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(config=configs(), session=any_sessions, text=texts, staff=st.booleans(), rating=ratings)
def test_even_a_session_no_dialogue_could_reach_gets_an_answer(
    config: BotConfig, session: Session, text: str, staff: bool, rating: LatestOrder | None
) -> None:
    turn = respond(config, session, text, from_staff=staff, awaiting_rating=rating)

    assert turn.replies or turn.effects
    assert turn.language in LANGUAGES
    assert all(1 <= line.quantity <= 99 for line in turn.session.lines)
    for effect in turn.effects:
        if isinstance(effect, ConfirmOrder):
            assert_confirmable(config, effect)
