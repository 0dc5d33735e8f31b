"""Many deadlines on one coarse timer: for waits that nearly always end long before theirs.

``asyncio.timeout`` arms an event-loop timer for every use (on uvloop a libuv timer each),
several microseconds a time, paid by every request on a hot path though its deadline almost
never fires. Here a deadline is a dict entry, and one loop timer, armed only while some
deadline is pending, checks them every ``resolution_s``: a callback runs up to that late.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable


class Alarms:
    def __init__(self, resolution_s: float = 0.05) -> None:
        self._resolution_s = resolution_s
        self._due: dict[int, tuple[float, Callable[[], object]]] = {}
        self._keys = itertools.count()
        self._ticking: asyncio.TimerHandle | None = None

    def set(self, seconds: float, callback: Callable[[], object]) -> int:
        """Call ``callback`` about ``seconds`` from now, unless cleared; returns its key."""
        key = next(self._keys)
        self._due[key] = (time.monotonic() + seconds, callback)
        if self._ticking is None:
            self._ticking = asyncio.get_running_loop().call_later(self._resolution_s, self._tick)
        return key

    def clear(self, key: int) -> None:
        self._due.pop(key, None)

    def _tick(self) -> None:
        now = time.monotonic()
        due = [key for key, (when, _) in self._due.items() if when <= now]
        for key in due:
            _, callback = self._due.pop(key)
            callback()
        self._ticking = None
        if self._due:
            self._ticking = asyncio.get_running_loop().call_later(self._resolution_s, self._tick)
