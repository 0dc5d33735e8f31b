"""Redis stream entries as the suite's clients read them (replies left undecoded)."""

from __future__ import annotations

from redis import asyncio as aioredis

Fields = dict[bytes, bytes]


async def stream_entries(redis: aioredis.Redis, stream: str) -> list[tuple[bytes, Fields]]:
    """XRANGE of the whole stream: (entry id, fields), all bytes, as a client without
    ``decode_responses`` answers (which redis-py's types cannot tell)."""
    entries = await redis.xrange(stream)
    assert isinstance(entries, list), entries
    typed: list[tuple[bytes, Fields]] = []
    for entry_id, fields in entries:
        assert isinstance(fields, dict), fields
        typed.append(
            (_bytes(entry_id), {_bytes(name): _bytes(value) for name, value in fields.items()})
        )
    return typed


def _bytes(value: bytes | str | None) -> bytes:
    assert isinstance(value, bytes), f"{value!r}: not bytes (decode_responses on?)"
    return value
