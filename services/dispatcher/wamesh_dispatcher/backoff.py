"""Exponential back-off with full jitter: each wait is drawn uniformly between nothing and a
ceiling that doubles per attempt up to a cap, so retries of many jobs that failed together
spread out instead of meeting Twilio again at the same instant."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

# Past this many doublings any sane cap is reached; it keeps 2**n from overflowing a float.
_MAX_DOUBLINGS = 64


class Uniform(Protocol):
    """A source of draws in [0, 1): ``random.Random`` or a test's own."""

    def random(self) -> float: ...


@dataclass(frozen=True)
class Backoff:
    base_s: float = 2.0
    cap_s: float = 30.0
    attempts: int = 5
    source: Uniform = field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.base_s <= 0:
            raise ValueError(f"base_s must be above 0, not {self.base_s}")
        if self.cap_s < self.base_s:
            raise ValueError(f"cap_s ({self.cap_s}) must be at least base_s ({self.base_s})")
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, not {self.attempts}")

    def ceiling(self, failed: int) -> float:
        """The longest wait after the ``failed``-th failed attempt (1 for the first)."""
        if failed < 1:
            raise ValueError(f"failed counts attempts from 1, not {failed}")
        return min(self.cap_s, self.base_s * 2.0 ** min(failed - 1, _MAX_DOUBLINGS))

    def delay(self, failed: int) -> float:
        """The wait before the next attempt, after the ``failed``-th failed one."""
        return self.source.random() * self.ceiling(failed)

    def exhausted(self, made: int) -> bool:
        """True once ``made`` attempts leave none to try."""
        return made >= self.attempts
