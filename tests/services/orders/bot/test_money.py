"""Money in minor units, and prices written the way each language writes them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wamesh_orders.bot.money import decimals, format_price, minor_units


@pytest.mark.parametrize(
    ("minor", "currency", "language", "written"),
    [
        (850, "EUR", "en", "€8.50"),
        (123456, "EUR", "en", "€1,234.56"),
        (1250, "JPY", "en", "¥1,250"),
        (1234, "KWD", "en", "KWD1.234"),
        (1500, "SAR", "ar", "\u200f15.00\xa0ر.س.\u200f"),
        (15000, "NPR", "ne", "नेरू\xa0150.00"),
        (850, "eur", "en", "€8.50"),
        (850, "EUR", "en-GB", "€8.50"),
        (850, "EUR", "xx-unknown", "€8.50"),
    ],
)
def test_format_price(minor: int, currency: str, language: str, written: str) -> None:
    assert format_price(minor, currency, language) == written


@pytest.mark.parametrize(
    ("units", "nanos", "currency", "minor"),
    [
        (12, 500_000_000, "EUR", 1250),
        (0, 10_000_000, "EUR", 1),
        (1250, 0, "JPY", 1250),
        (1, 234_000_000, "KWD", 1234),
        (-1, -500_000_000, "EUR", -150),
    ],
)
def test_minor_units_from_units_and_nanos(
    units: int, nanos: int, currency: str, minor: int
) -> None:
    assert minor_units(units, nanos, currency) == minor


@pytest.mark.parametrize(
    ("units", "nanos", "currency", "complaint"),
    [
        (0, 5_000_000, "EUR", "finer than EUR's 2 decimals"),
        (1, 500_000_000, "JPY", "finer than JPY's 0 decimals"),
        (1, 230_000, "KWD", "finer than KWD's 3 decimals"),
        (1, -1, "EUR", "same sign"),
        (0, 1_000_000_000, "EUR", "within"),
    ],
)
def test_minor_units_refuses_what_the_currency_cannot_hold(
    units: int, nanos: int, currency: str, complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        minor_units(units, nanos, currency)


@given(
    currency=st.sampled_from(["EUR", "JPY", "KWD", "SAR", "NPR"]),
    minor=st.integers(min_value=0, max_value=10**12),
)
def test_minor_units_undo_the_split_into_units_and_nanos(currency: str, minor: int) -> None:
    per_unit = 10 ** decimals(currency)
    units, fraction = divmod(minor, per_unit)
    nanos = fraction * (10**9 // per_unit)

    assert minor_units(units, nanos, currency) == minor
