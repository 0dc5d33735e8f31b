"""The time a webhook has left before it must be answered."""

from __future__ import annotations

import time


class Deadline:
    __slots__ = ("_at",)

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def left(self, *, reserve_s: float = 0.0) -> float:
        """Seconds left, keeping ``reserve_s`` back for what must still follow (0 at least)."""
        return max(0.0, self._at - time.monotonic() - reserve_s)
