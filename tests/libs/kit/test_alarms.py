"""Alarms: callbacks at their deadline (give or take the resolution), unless cleared."""

from __future__ import annotations

import asyncio

from wamesh_kit.alarms import Alarms


async def test_an_alarm_rings_once_its_time_has_come_and_a_cleared_one_never() -> None:
    alarms = Alarms(resolution_s=0.01)
    rung: list[str] = []
    alarms.set(0.05, lambda: rung.append("later"))
    cleared = alarms.set(0.02, lambda: rung.append("cleared"))
    alarms.set(0.0, lambda: rung.append("now"))
    alarms.clear(cleared)

    await asyncio.sleep(0.03)
    assert rung == ["now"]
    await asyncio.sleep(0.1)
    assert rung == ["now", "later"]


async def test_the_timer_stops_when_nothing_is_due_and_starts_again() -> None:
    alarms = Alarms(resolution_s=0.01)
    rung: list[int] = []
    alarms.set(0.0, lambda: rung.append(1))
    await asyncio.sleep(0.05)
    assert alarms._ticking is None  # nothing pending: no timer armed
    alarms.set(0.0, lambda: rung.append(2))
    await asyncio.sleep(0.05)
    assert rung == [1, 2]
