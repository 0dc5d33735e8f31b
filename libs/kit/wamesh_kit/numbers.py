"""WhatsApp sender numbers in one canonical form: E.164, no ``whatsapp:`` prefix.

``+14155238886``, ``whatsapp:+14155238886`` and `` +1 415 523 8886 `` are one number, so
routing, uniqueness and the Redis route key all use :func:`normalize_number`.
"""

from __future__ import annotations

import re

from wamesh_kit.errors import InvalidArgument

_PREFIX = "whatsapp:"
_SEPARATORS = re.compile(r"[\s().\-]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def normalize_number(raw: str, *, field: str = "number") -> str:
    """The E.164 form of ``raw``; InvalidArgument naming ``field`` when it is not a number."""
    candidate = raw.strip()
    if candidate.lower().startswith(_PREFIX):
        candidate = candidate[len(_PREFIX) :].strip()
    candidate = _SEPARATORS.sub("", candidate)
    if not _E164.fullmatch(candidate):
        raise InvalidArgument(
            "must be an E.164 number such as +14155238886 (optionally whatsapp:-prefixed)",
            field=field,
        )
    return candidate


def whatsapp_address(number: str) -> str:
    """The address Twilio uses in From/To for a WhatsApp sender."""
    return f"{_PREFIX}{number}"
