"""The client factory talks to the harness's real Redis server, over hiredis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.utils import HIREDIS_AVAILABLE

from wamesh_kit.localinfra import LocalRedis
from wamesh_kit.redis_client import PipelinedScript, make_redis


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


_COUNT = PipelinedScript("return redis.call('INCRBY', KEYS[1], ARGV[1])")


async def test_a_pipelined_script_is_loaded_when_redis_lacks_it_and_runs_each_call_once(
    redis_url: str,
) -> None:
    client = make_redis(redis_url)
    try:
        await client.delete("wamesh:test:a", "wamesh:test:b")
        await client.script_flush()
        calls = [(["wamesh:test:a"], [1]), (["wamesh:test:b"], [5]), (["wamesh:test:a"], [2])]

        assert await _COUNT.run(client, calls) == [1, 5, 3]
        assert await _COUNT.run(client, calls) == [4, 10, 6]  # loaded now: no second load
        assert await client.get("wamesh:test:a") == b"6"
    finally:
        await client.aclose()


async def test_a_pipelined_script_raises_what_redis_refused(redis_url: str) -> None:
    client = make_redis(redis_url)
    try:
        await client.set("wamesh:test:text", "not a number")
        with pytest.raises(ResponseError, match="not an integer"):
            await _COUNT.run(client, [(["wamesh:test:c"], [1]), (["wamesh:test:text"], [1])])
    finally:
        await client.aclose()


async def test_a_busy_pool_waits_for_a_free_connection_instead_of_raising(
    redis_url: str,
) -> None:
    """Ten times more concurrent commands than connections: every one is answered."""
    client = make_redis(redis_url, max_connections=4, pool_timeout_s=10.0)
    try:
        # BLPOP holds its connection until the timeout, so the pool stays exhausted meanwhile.
        results = await asyncio.gather(
            *(client.blpop([f"wamesh:test:empty:{i}"], timeout=0.2) for i in range(40))
        )
        assert results == [None] * 40
        assert len(client.connection_pool._in_use_connections) == 0
    finally:
        await client.aclose()


async def test_a_pool_that_stays_busy_raises_after_its_timeout(redis_url: str) -> None:
    client = make_redis(redis_url, max_connections=1, pool_timeout_s=0.2)
    try:
        holding = asyncio.ensure_future(client.blpop(["wamesh:test:empty"], timeout=2))
        await asyncio.sleep(0.1)
        with pytest.raises(RedisConnectionError):
            await client.ping()
        assert await holding is None
    finally:
        await client.aclose()
