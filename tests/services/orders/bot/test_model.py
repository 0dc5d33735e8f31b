"""The session survives its trip through JSON, and refuses what is not one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wamesh_orders.bot.dialogue import CartLine, Session, Stage

SESSION = Session(
    language="ar",
    stage=Stage.AWAITING_CONFIRMATION,
    lines=(CartLine("pz-1", "Margherita", 2, 850, "EUR"),),
    method="delivery",
    address="Calle Mayor 5",
    greeted=True,
)

LINE = {
    "menu_item_id": "pz-1",
    "name": "Margherita",
    "quantity": 2,
    "unit_price_minor": 850,
    "currency": "EUR",
}

lines = st.builds(
    CartLine,
    menu_item_id=st.text(max_size=10),
    name=st.text(max_size=20),
    quantity=st.integers(min_value=1, max_value=99),
    unit_price_minor=st.integers(min_value=0, max_value=10**9),
    currency=st.sampled_from(["EUR", "JPY", "SAR"]),
)
sessions = st.builds(
    Session,
    language=st.one_of(st.none(), st.sampled_from(["en", "ar", "ne"])),
    stage=st.sampled_from(Stage),
    lines=st.lists(lines, max_size=4).map(tuple),
    method=st.one_of(st.none(), st.sampled_from(["delivery", "pickup"])),
    address=st.text(max_size=30),
    greeted=st.booleans(),
)


def test_a_new_session_is_browsing_an_empty_cart_ungreeted() -> None:
    assert Session.new() == Session(
        language=None, stage=Stage.BROWSING, lines=(), method=None, address="", greeted=False
    )


def test_the_json_form() -> None:
    assert SESSION.to_json() == {
        "language": "ar",
        "stage": "awaiting_confirmation",
        "lines": [LINE],
        "method": "delivery",
        "address": "Calle Mayor 5",
        "greeted": True,
    }


@given(sessions)
def test_a_session_survives_json(session: Session) -> None:
    assert Session.from_json(json.loads(json.dumps(session.to_json()))) == session


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"stage": "dancing"}, "stage"),
        ({"stage": None}, "stage"),
        ({"method": "drone"}, "method"),
        ({"greeted": 1}, "greeted"),
        ({"address": None}, "address"),
        ({"lines": "none"}, "lines"),
        ({"lines": [7]}, "cart line"),
        ({"lines": [{**LINE, "quantity": 0}]}, "quantity"),
        ({"lines": [{**LINE, "quantity": True}]}, "quantity"),
        ({"lines": [{**LINE, "unit_price_minor": "8.50"}]}, "price"),
    ],
)
def test_what_is_not_a_session_is_a_value_error_naming_the_field(
    change: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        Session.from_json({**SESSION.to_json(), **change})
