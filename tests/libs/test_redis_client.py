"""The client factory talks to the harness's real Redis server, over hiredis."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import ConnectionError as RedisConnectionError
from redis.utils import HIREDIS_AVAILABLE

from wamesh.libs.localinfra import LocalRedis
from wamesh.libs.redis_client import make_redis


async def test_talks_to_a_real_redis_server(redis_url: str) -> None:
    client = make_redis(redis_url, client_name="test-factory")
    try:
        info = await client.info("server")
        assert info["redis_version"]
        assert info["process_id"] > 0
        assert await client.client_getname() == "test-factory"
        await client.set("wamesh:probe", b"\x00bytes")
        assert await client.get("wamesh:probe") == b"\x00bytes"
    finally:
        await client.aclose()


def test_hiredis_parser_is_available() -> None:
    assert HIREDIS_AVAILABLE


async def test_a_dead_server_fails_fast(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis", durable=False)
    server.start()
    url = server.url
    server.stop()
    client = make_redis(url, socket_timeout_s=1.0)
    try:
        with pytest.raises(RedisConnectionError):
            await client.ping()
    finally:
        await client.aclose()
