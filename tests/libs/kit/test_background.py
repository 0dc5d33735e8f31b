"""``repeat``: a background loop that outlives its step's failures and stops when told."""

from __future__ import annotations

import asyncio
import logging

import pytest

from wamesh_kit.background import repeat
from wamesh_kit.errors import Unavailable


async def test_a_failing_step_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    stop = asyncio.Event()
    failures: list[Exception] = [
        ConnectionRefusedError(111, "Connect call failed"),
        Unavailable("the dispatcher cannot be reached"),
        RuntimeError("a bug"),
    ]
    calls = 0

    async def step() -> bool:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        stop.set()
        return False

    with caplog.at_level(logging.WARNING, logger="wamesh_kit.background"):
        await asyncio.wait_for(repeat(step, stop, interval_s=0.01, name="chores"), 10)

    assert calls == 4
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "chores waits for a dependency"),
        ("WARNING", "chores waits for a dependency"),
        ("ERROR", "chores failed; retrying"),
    ]


async def test_more_work_runs_at_once_and_none_waits_for_the_interval() -> None:
    stop = asyncio.Event()
    outcomes = [True, True, False]
    calls = 0

    async def step() -> bool:
        nonlocal calls
        calls += 1
        if not outcomes:
            raise AssertionError("ran again before the interval")
        more = outcomes.pop(0)
        if not more:
            asyncio.get_running_loop().call_soon(stop.set)
        return more

    # An interval far longer than the test: a wait anywhere but after the last step hangs.
    await asyncio.wait_for(repeat(step, stop, interval_s=3600, name="chores"), 10)

    assert calls == 3
