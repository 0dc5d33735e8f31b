"""A per-source request budget (token bucket), spent before a request costs anything else.

In-process and per replica on purpose: a flood of unsigned requests must not reach Redis
or the other services even to be counted. Idle sources are forgotten.
"""

from __future__ import annotations

import time


class SourceBudget:
    def __init__(self, per_second: float, burst: int, *, max_sources: int = 100_000) -> None:
        self._rate = per_second
        self._burst = float(burst)
        self._max_sources = max_sources
        self._buckets: dict[str, tuple[float, float]] = {}  # source → (tokens, updated at)

    def spend(self, source: str) -> float:
        """0 if ``source`` may make a request now, else the seconds until it may."""
        now = time.monotonic()
        tokens, updated = self._buckets.get(source, (self._burst, now))
        tokens = min(self._burst, tokens + (now - updated) * self._rate)
        if tokens < 1:
            self._buckets[source] = (tokens, now)
            return (1 - tokens) / self._rate
        if len(self._buckets) >= self._max_sources and source not in self._buckets:
            self._forget_idle(now)
        self._buckets[source] = (tokens - 1, now)
        return 0.0

    def _forget_idle(self, now: float) -> None:
        full_after = self._burst / self._rate
        for source, (_, updated) in list(self._buckets.items()):
            if now - updated > full_after:
                del self._buckets[source]
