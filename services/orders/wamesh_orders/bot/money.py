"""Money as integer minor units of an ISO 4217 currency, and prices as each language writes them."""

from __future__ import annotations

from decimal import Decimal

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency, get_currency_precision

_NANOS_PER_UNIT = 1_000_000_000
_FALLBACK_LOCALE = "en"


def format_price(minor_units: int, currency: str, language: str) -> str:
    """``1250, "EUR", "en"`` → ``€12.50``, in the language's own way of writing amounts."""
    code = currency.upper()
    amount = Decimal(minor_units).scaleb(-decimals(code))
    return format_currency(amount, code, locale=_locale(language))


def minor_units(units: int, nanos: int, currency: str) -> int:
    """The minor units of a google-style Money (whole units plus billionths of a unit).

    Raises ValueError when nanos are out of range, disagree in sign with units, or hold more
    precision than the currency has (half a cent of EUR, a fraction of a yen)."""
    if not -_NANOS_PER_UNIT < nanos < _NANOS_PER_UNIT:
        raise ValueError(f"nanos must be within ±999,999,999, not {nanos}")
    if (units > 0 and nanos < 0) or (units < 0 and nanos > 0):
        raise ValueError(f"units ({units}) and nanos ({nanos}) must have the same sign")
    places = decimals(currency.upper())
    minor_per_unit: int = 10**places
    nanos_per_minor = _NANOS_PER_UNIT // minor_per_unit
    if nanos % nanos_per_minor:
        raise ValueError(f"{nanos} nanos is finer than {currency}'s {places} decimals")
    return units * minor_per_unit + nanos // nanos_per_minor


def decimals(currency: str) -> int:
    """How many decimals the currency's amounts have (EUR 2, JPY 0, KWD 3)."""
    return int(get_currency_precision(currency))


def _locale(language: str) -> Locale:
    try:
        return Locale.parse(language.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(_FALLBACK_LOCALE)
