"""Redis key names, in one place.

Every tenant-scoped key carries the tenant in a ``{hash tag}`` so that all of one tenant's
keys live in one Redis Cluster slot: a MULTI or a Lua script over them stays legal when
Redis is sharded. Keys that are looked up before the tenant is known (the route of a sender
number) are global, hash-tagged by what they are about.
"""

from __future__ import annotations

import re

PREFIX = "wamesh"

_TENANT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PART = re.compile(r"^[^\s{}]+$")


def _check_parts(parts: tuple[str, ...]) -> None:
    if not parts:
        raise ValueError("a key needs at least one part after its scope")
    for part in parts:
        if not _PART.match(part):
            raise ValueError(f"key part {part!r} is empty or holds whitespace or braces")


def tenant_key(tenant_id: str, *parts: str) -> str:
    """``wamesh:{<tenant>}:<part>:...``: a key in the tenant's cluster slot."""
    if not _TENANT_ID.match(tenant_id):
        raise ValueError(f"tenant id {tenant_id!r} is not a valid key scope")
    _check_parts(parts)
    return ":".join((PREFIX, "{" + tenant_id + "}", *parts))


def global_key(*parts: str) -> str:
    """``wamesh:<part>:...``: a key not owned by one tenant."""
    _check_parts(parts)
    return ":".join((PREFIX, *parts))


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (the first non-empty ``{...}``, else all)."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def dedup_key(tenant_id: str, message_sid: str) -> str:
    """Marks a Twilio MessageSid as seen (SET NX with a TTL)."""
    return tenant_key(tenant_id, "dedup", message_sid)


def number_route_key(number: str) -> str:
    """Caches which tenant owns a sender number (E.164, no ``whatsapp:`` prefix)."""
    return f"{global_key('route', 'number')}:{{{_number(number)}}}"


def number_route_generation_key(number: str) -> str:
    """Counts invalidations of a number's route; same slot as :func:`number_route_key`."""
    return f"{global_key('route', 'generation')}:{{{_number(number)}}}"


def _number(number: str) -> str:
    if not _PART.match(number):
        raise ValueError(f"number {number!r} is empty or holds whitespace or braces")
    return number


def stream_key(name: str) -> str:
    """A stream every tenant shares (``inbound``, ``statuses``): ``wamesh:stream:<name>``."""
    return global_key("stream", name)


def dead_letter_stream(stream: str) -> str:
    """Where a stream's undeliverable entries go; same hash tag, so same slot."""
    return f"{stream}:dead"
