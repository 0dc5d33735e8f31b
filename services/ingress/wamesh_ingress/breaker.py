"""Whether to try the store at all: after it failed a webhook, the next ones spill at once.

While the store is down or frozen, each webhook that tries it waits for its time to run out
before it spills; at a few hundred webhooks a second that is thousands of requests held
open per replica. So after a failure the breaker opens for ``retry_after_s``: webhooks
spill without trying. Then one webhook (the probe) tries the store while the others still
spill; its success closes the breaker, its failure opens it again. Spilled webhooks are
durable, so a needless opening costs a replay, never a webhook.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class StoreBreaker:
    def __init__(
        self,
        retry_after_s: float,
        *,
        probe_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._retry_after_s = retry_after_s
        self._probe_timeout_s = probe_timeout_s  # a probe that never reported is forgotten
        self._clock = clock
        self._open_until: float | None = None  # None: closed
        self._probe_since: float | None = None

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allows(self) -> bool:
        """True when this caller may try the store (and, when half-open, is the probe)."""
        if self._open_until is None:
            return True
        now = self._clock()
        if now < self._open_until:
            return False
        if self._probe_since is not None and now - self._probe_since < self._probe_timeout_s:
            return False
        self._probe_since = now
        return True

    def succeeded(self) -> None:
        """The store answered (even a refusal is an answer)."""
        self._open_until = self._probe_since = None

    def failed(self) -> None:
        """The store was down, or did not answer in the webhook's time."""
        self._open_until = self._clock() + self._retry_after_s
        self._probe_since = None
