"""What a valid tenant looks like: every check names the field it refuses.

Validators take the request's protobuf messages and return them normalised (defaults
filled in, numbers canonical), so the store only ever sees valid data.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Iterable

from google.protobuf.duration_pb2 import Duration

from wamesh.common.v1.money_pb2 import Money
from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh_kit.errors import InvalidArgument
from wamesh_kit.numbers import normalize_number

LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
CURRENCY = re.compile(r"[A-Z]{3}")
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
MAX_TEXT = 200
MAX_BOT_TEXT = 1600  # Twilio's limit on one WhatsApp message body

DEFAULT_TIME_ZONE = "UTC"
DEFAULT_LANGUAGE = "en"
# Twilio's WhatsApp throughput per sender number; a tenant on a slower number sets its own.
DEFAULT_OUTBOUND_PER_SECOND = 80.0
DEFAULT_RECIPIENT_MIN_INTERVAL_S = 2
DEFAULT_INBOUND_PER_MINUTE = 20
DEFAULT_SEND_ATTEMPTS = 5
MAX_SEND_ATTEMPTS = 20


def display_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument("must not be empty", field="display_name")
    return _bounded(value, "display_name", MAX_TEXT)


def time_zone(value: str) -> str:
    value = value.strip() or DEFAULT_TIME_ZONE
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(
            f"{value!r} is not an IANA time zone such as Europe/Madrid", field="time_zone"
        ) from None
    return value


def language(value: str, *, field: str = "default_language") -> str:
    value = value.strip() or DEFAULT_LANGUAGE
    if not LANGUAGE_TAG.fullmatch(value):
        raise InvalidArgument(f"{value!r} is not a BCP 47 language tag such as es", field=field)
    return value


def support_contact(value: str) -> str:
    return _bounded(value.strip(), "support_contact", MAX_TEXT)


def limits(value: pb.Limits, *, field: str = "limits") -> pb.Limits:
    """The limits with defaults for zero/unset values; negatives are refused."""
    per_second = value.outbound_messages_per_second
    if not math.isfinite(per_second) or per_second < 0:
        raise InvalidArgument(
            "must be a non-negative number", field=f"{field}.outbound_messages_per_second"
        )
    interval = value.recipient_min_interval
    if interval.seconds < 0 or interval.nanos < 0:
        raise InvalidArgument("must not be negative", field=f"{field}.recipient_min_interval")
    if value.inbound_messages_per_minute < 0:
        raise InvalidArgument("must not be negative", field=f"{field}.inbound_messages_per_minute")
    if not 0 <= value.max_send_attempts <= MAX_SEND_ATTEMPTS:
        raise InvalidArgument(
            f"must be 1 to {MAX_SEND_ATTEMPTS} (0: {DEFAULT_SEND_ATTEMPTS})",
            field=f"{field}.max_send_attempts",
        )
    if interval.seconds == 0 and interval.nanos == 0:
        interval = Duration(seconds=DEFAULT_RECIPIENT_MIN_INTERVAL_S)
    return pb.Limits(
        outbound_messages_per_second=per_second or DEFAULT_OUTBOUND_PER_SECOND,
        recipient_min_interval=interval,
        inbound_messages_per_minute=value.inbound_messages_per_minute or DEFAULT_INBOUND_PER_MINUTE,
        max_send_attempts=value.max_send_attempts or DEFAULT_SEND_ATTEMPTS,
    )


def bot(value: pb.BotSettings, *, field: str = "bot") -> pb.BotSettings:
    currencies: set[str] = set()
    seen_ids: set[str] = set()
    for index, item in enumerate(value.menu):
        where = f"{field}.menu[{index}]"
        if not item.id.strip():
            raise InvalidArgument("a menu item needs an id", field=f"{where}.id")
        if item.id in seen_ids:
            raise InvalidArgument(f"menu item id {item.id!r} is used twice", field=f"{where}.id")
        seen_ids.add(item.id)
        if not item.name.strip():
            raise InvalidArgument("a menu item needs a name", field=f"{where}.name")
        _bounded(item.name, f"{where}.name", MAX_TEXT)
        _bounded(item.description, f"{where}.description", MAX_BOT_TEXT)
        if not item.HasField("price"):
            raise InvalidArgument("a menu item needs a price", field=f"{where}.price")
        _price(item.price, f"{where}.price")
        currencies.add(item.price.currency_code)
    if len(currencies) > 1:
        raise InvalidArgument(
            f"every item must have the same currency, not {', '.join(sorted(currencies))}",
            field=f"{field}.menu",
        )
    for name in ("greeting", "promo_text", "apology_text"):
        _bounded(getattr(value, name), f"{field}.{name}", MAX_BOT_TEXT)
    for index, tag in enumerate(value.languages):
        language(tag, field=f"{field}.languages[{index}]")
    normalised = pb.BotSettings()
    normalised.CopyFrom(value)
    del normalised.staff_numbers[:]
    normalised.staff_numbers.extend(_staff_numbers(value.staff_numbers, f"{field}.staff_numbers"))
    return normalised


def _staff_numbers(numbers: Iterable[str], field: str) -> list[str]:
    """E.164, each once: the bot matches a writer's number against them."""
    found: list[str] = []
    for index, raw in enumerate(numbers):
        number = normalize_number(raw, field=f"{field}[{index}]")
        if number in found:
            raise InvalidArgument(f"{number} is listed twice", field=f"{field}[{index}]")
        found.append(number)
    return found


def _price(price: Money, field: str) -> None:
    if not CURRENCY.fullmatch(price.currency_code):
        raise InvalidArgument(
            "must be an ISO 4217 code in upper case, e.g. EUR", field=f"{field}.currency_code"
        )
    if price.units < 0 or price.nanos < 0:
        raise InvalidArgument("must not be negative", field=field)
    if price.nanos > 999_999_999:
        raise InvalidArgument("must be below 1,000,000,000", field=f"{field}.nanos")


def credentials(value: pb.TwilioCredentials, *, field: str = "credentials") -> pb.TwilioCredentials:
    if not ACCOUNT_SID.fullmatch(value.account_sid):
        raise InvalidArgument(
            "must be 'AC' followed by 32 hex digits", field=f"{field}.account_sid"
        )
    if not value.auth_token.strip():
        raise InvalidArgument("must not be empty", field=f"{field}.auth_token")
    if value.api_key_sid and not API_KEY_SID.fullmatch(value.api_key_sid):
        raise InvalidArgument(
            "must be 'SK' followed by 32 hex digits", field=f"{field}.api_key_sid"
        )
    if value.api_key_sid and not value.api_key_secret:
        raise InvalidArgument(
            "is required when api_key_sid is set", field=f"{field}.api_key_secret"
        )
    if value.api_key_secret and not value.api_key_sid:
        raise InvalidArgument(
            "is required when api_key_secret is set", field=f"{field}.api_key_sid"
        )
    return value


def messaging_service_sid(value: str) -> str:
    if value and not MESSAGING_SERVICE_SID.fullmatch(value):
        raise InvalidArgument(
            "must be empty or 'MG' followed by 32 hex digits", field="messaging_service_sid"
        )
    return value


def _bounded(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"must be at most {limit} characters", field=field)
    return value
