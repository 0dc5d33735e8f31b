"""Identifiers every service checks the same way: tenant ids and Twilio SIDs."""

from __future__ import annotations

import re

from wamesh_kit.errors import InvalidArgument

# Stable and URL-safe: lower-case letters, digits and '-', 3 to 63 characters (a DNS label).
TENANT_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
# Twilio resource SIDs: a two-letter type prefix and 32 hex digits (SM…, MM…, AC…, MG…).
TWILIO_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")


def tenant_id(value: str, *, field: str = "tenant_id") -> str:
    if not value:
        raise InvalidArgument("is required", field=field)
    if not TENANT_ID.fullmatch(value):
        raise InvalidArgument(
            "must be 3-63 lower-case letters, digits or '-', starting and ending alphanumeric",
            field=field,
        )
    return value


def twilio_sid(value: str, *, field: str, prefixes: tuple[str, ...] = ()) -> str:
    """``value`` if it is a Twilio SID (with one of ``prefixes``, when given)."""
    if not value:
        raise InvalidArgument("is required", field=field)
    if not TWILIO_SID.fullmatch(value) or (prefixes and not value.startswith(prefixes)):
        kinds = "/".join(prefixes) or "two letters"
        raise InvalidArgument(f"must be {kinds} followed by 32 hex digits", field=field)
    return value
