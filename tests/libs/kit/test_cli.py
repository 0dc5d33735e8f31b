"""The ``wamesh`` command, run as a user runs it: a real process, real servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from sqlalchemy import text

from wamesh_kit.db import make_engine

WAMESH = [sys.executable, "-m", "wamesh_kit"]


def test_serve_names_the_services_there_are_for_an_unknown_one() -> None:
    result = subprocess.run(
        [*WAMESH, "serve", "no-such-service"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "unknown service 'no-such-service'" in result.stderr
    assert "available:" in result.stderr


def test_migrate_refuses_a_service_without_migrations() -> None:
    result = subprocess.run(
        [*WAMESH, "migrate", "no-such-service", "--database-url", "postgresql://x@127.0.0.1/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "no migrations for 'no-such-service'" in result.stderr


async def _current_database(dsn: str) -> str:
    engine = make_engine(dsn, pool_size=1)
    try:
        async with engine.connect() as connection:
            return str(await connection.scalar(text("SELECT current_database()")))
    finally:
        await engine.dispose()


def test_dev_infra_serves_real_servers_until_interrupted(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [*WAMESH, "dev", "infra", "--json", "--data-dir", str(tmp_path / "dev")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        described = json.loads(process.stdout.readline())
        dsn = described["databases"]["conversations"]
        assert asyncio.run(_current_database(dsn)) == "conversations"
        client = redis.Redis.from_url(described["redis_url"])
        assert client.ping() is True
        client.close()
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        if process.stdout is not None:
            process.stdout.close()
    stopped = redis.Redis.from_url(described["redis_url"], socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        stopped.ping()
    stopped.close()
