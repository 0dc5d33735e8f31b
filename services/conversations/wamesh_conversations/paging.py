"""Keyset page tokens: opaque to callers, bound to the query that issued them.

A token holds the sort key of the last row of its page and a fingerprint of the query
(tenant, filters). Presented with another query it is INVALID_ARGUMENT, never a page of
something else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime, timedelta

from wamesh_kit.errors import InvalidArgument

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _fingerprint(*query: str) -> str:
    return hashlib.sha256("\x00".join(query).encode()).hexdigest()[:16]


def encode(after: tuple[datetime, str], *query: str) -> str:
    moment, row_id = after
    # Exact microseconds (Postgres's precision): a float would skip or repeat rows.
    body = {"t": (moment - _EPOCH) // _MICROSECOND, "i": row_id, "q": _fingerprint(*query)}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode(token: str, *query: str) -> tuple[datetime, str] | None:
    """The position after which the next page starts; None for the first page."""
    if not token:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        micros, row_id, fingerprint = int(body["t"]), str(body["i"]), str(body["q"])
        moment = _EPOCH + micros * _MICROSECOND
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError, OSError):
        raise InvalidArgument("is not a token this service issued", field="page_token") from None
    if fingerprint != _fingerprint(*query):
        raise InvalidArgument("belongs to another query", field="page_token")
    return moment, row_id
