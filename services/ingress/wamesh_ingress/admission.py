"""A per-source request budget (token bucket), spent before a request costs anything else.

In-process and per replica on purpose: a flood of unsigned requests must not reach Redis
or the other services even to be counted. At most ``max_sources`` sources are remembered,
in the order they were last seen: a newcomer past the bound forgets the least recently
seen one, at a constant cost however many are remembered, so a flood of distinct sources
can neither grow the map nor make each newcomer look through it. The one forgotten is
almost always idle (its bucket full again, so nothing is lost); one that was not comes
back with a full budget, which a flood would have to outnumber every remembered source to
arrange.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class SourceBudget:
    def __init__(self, per_second: float, burst: int, *, max_sources: int = 100_000) -> None:
        self._rate = per_second
        self._burst = float(burst)
        self._max_sources = max_sources
        # source → (tokens, updated at), the least recently seen first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def spend(self, source: str) -> float:
        """0 if ``source`` may make a request now, else the seconds until it may."""
        now = time.monotonic()
        buckets = self._buckets
        bucket = buckets.pop(source, None)  # put back below, as the most recently seen
        if bucket is None:
            tokens = self._burst
            if len(buckets) >= self._max_sources:
                buckets.popitem(last=False)
        else:
            tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self._rate)
        if tokens < 1:
            buckets[source] = (tokens, now)
            return (1 - tokens) / self._rate
        buckets[source] = (tokens - 1, now)
        return 0.0
