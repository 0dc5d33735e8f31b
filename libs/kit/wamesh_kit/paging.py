"""Keyset page tokens: opaque to callers, bound to the query that issued them.

A token holds the sort key of the last row of its page and a fingerprint of the query that
issued it (tenant, filters). Presented with another query it is INVALID_ARGUMENT naming
``page_token``, never a page of something else; so is anything this service did not issue.
Each ordering declares the types of its key once::

    CONVERSATION_PAGES = PageTokens[tuple[datetime, str]](datetime, str)
    token = CONVERSATION_PAGES.encode((last.at, last.id), "conversations", tenant_id)
    after = CONVERSATION_PAGES.decode(request.page_token, "conversations", tenant_id)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar, cast

from wamesh_kit.errors import InvalidArgument

KeyPart = datetime | str | int
Key = TypeVar("Key", bound=tuple[KeyPart, ...])

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _fingerprint(query: tuple[str, ...]) -> str:
    return hashlib.sha256("\x00".join(query).encode()).hexdigest()[:16]


def _not_issued() -> InvalidArgument:
    return InvalidArgument("is not a token this service issued", field="page_token")


class PageTokens(Generic[Key]):
    """The page tokens of one keyset ordering, whose key has the given part types."""

    def __init__(self, *parts: type[datetime] | type[str] | type[int]) -> None:
        self._parts = parts

    def encode(self, after: Key, *query: str) -> str:
        if len(after) != len(self._parts):
            raise ValueError(f"a key of {len(self._parts)} parts, not {len(after)}")
        body = {"k": [self._dump(part) for part in after], "q": _fingerprint(query)}
        return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")

    def decode(self, token: str, *query: str) -> Key | None:
        """The key after which the next page starts; None for the first page."""
        if not token:
            return None
        try:
            body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            values, fingerprint = body["k"], body["q"]
        except (binascii.Error, ValueError, TypeError, KeyError):
            raise _not_issued() from None
        if not isinstance(values, list) or len(values) != len(self._parts):
            raise _not_issued()
        key = tuple(
            self._load(kind, value) for kind, value in zip(self._parts, values, strict=True)
        )
        if fingerprint != _fingerprint(query):
            raise InvalidArgument("belongs to another query", field="page_token")
        return cast(Key, key)

    @staticmethod
    def _dump(part: KeyPart) -> str | int:
        if isinstance(part, datetime):
            # Exact microseconds (Postgres's precision): a float would skip or repeat rows.
            return (part - _EPOCH) // _MICROSECOND
        return part

    @staticmethod
    def _load(kind: type[KeyPart], value: object) -> KeyPart:
        if kind is str and isinstance(value, str):
            return value
        if kind in (int, datetime) and isinstance(value, int) and not isinstance(value, bool):
            if kind is int:
                return value
            try:
                return _EPOCH + value * _MICROSECOND
            except OverflowError:
                raise _not_issued() from None
        raise _not_issued()
