"""Faults on command: what the next message creates of an account (optionally of one sender
or to one recipient) meet instead of a plain success, and per-sender rate limits."""

from __future__ import annotations

import itertools
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import Field as PydanticField

from wamesh_sandbox.errors import CATALOGUE

Reset = Literal["before", "after"]
Outcome = Literal["failed", "undelivered"]


class AdminRefusal(ValueError):
    """A fault that cannot be set: names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass
class Fault:
    """One rule. ``count`` creates meet it (None: every one until it is cleared).

    ``code`` (and ``status``, else the code's usual one): answer this Twilio error instead
    of creating the message.
    ``latency_ms`` (uniform up to ``latency_max_ms`` when given): wait first.
    ``outcome`` with ``code``: accept the message, then end it ``failed`` or ``undelivered``
    with that ``ErrorCode`` in its status callbacks, as Twilio reports late failures.
    ``reset``: drop the connection with no answer, ``before`` the message is recorded (it
    never existed) or ``after`` (it exists and proceeds: the ambiguous case a sender must
    resolve by looking the message up).
    """

    id: int
    account_sid: str
    sender: str | None = None
    recipient: str | None = None
    count: int | None = 1
    status: int | None = None
    code: int | None = None
    latency_ms: float = 0.0
    latency_max_ms: float | None = None
    reset: Reset | None = None
    outcome: Outcome | None = None
    met: int = 0
    # What the last create that met it waited: a range's draws are otherwise invisible.
    last_latency_ms: float | None = None

    def matches(self, account_sid: str, sender: str, recipient: str) -> bool:
        return (
            self.account_sid == account_sid
            and self.sender in (None, sender)
            and self.recipient in (None, recipient)
            and (self.count is None or self.met < self.count)
        )

    def latency_s(self, rng: random.Random) -> float:
        if self.latency_max_ms is None:
            self.last_latency_ms = self.latency_ms
        else:
            self.last_latency_ms = rng.uniform(self.latency_ms, self.latency_max_ms)
        return self.last_latency_ms / 1000

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RateLimit:
    """Past ``per_second`` creates a second for one sender, Twilio answers 429 / 20429."""

    account_sid: str
    sender: str | None
    per_second: float
    _tokens: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    def admit(self, sender: str, now: float) -> bool:
        tokens, at = self._tokens.get(sender, (self.per_second, now))
        tokens = min(self.per_second, tokens + (now - at) * self.per_second)
        if tokens < 1:
            self._tokens[sender] = (tokens, now)
            return False
        self._tokens[sender] = (tokens - 1, now)
        return True


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    account_sid: str = PydanticField(min_length=1)
    sender: str | None = None
    recipient: str | None = None
    count: int | None = PydanticField(default=1, ge=1)
    status: int | None = None
    code: int | None = None
    latency_ms: float = PydanticField(default=0.0, ge=0)
    latency_max_ms: float | None = PydanticField(default=None, ge=0)
    reset: Reset | None = None
    outcome: Outcome | None = None


class RateLimitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    account_sid: str = PydanticField(min_length=1)
    sender: str | None = None
    per_second: float = PydanticField(gt=0)


def named_error(error: ValidationError) -> AdminRefusal:
    first = error.errors()[0]
    return AdminRefusal(".".join(map(str, first["loc"])) or "body", first["msg"])


class Faults:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._limits: list[RateLimit] = []
        self._ids = itertools.count(1)

    def add(self, spec: object) -> Fault:
        """A fault from the admin API's JSON; AdminRefusal naming the field that is wrong."""
        try:
            fields = FaultSpec.model_validate(spec).model_dump()
        except ValidationError as error:
            raise named_error(error) from None
        fault = Fault(id=next(self._ids), **fields)
        if fault.code is not None and fault.code not in CATALOGUE:
            raise AdminRefusal("code", f"must be one of {sorted(CATALOGUE)}")
        if fault.status is not None and fault.code is None:
            raise AdminRefusal("code", "is required with status: the Twilio error to answer")
        if fault.outcome is not None:
            if fault.code is None or fault.status is not None:
                raise AdminRefusal("outcome", "needs a code (its ErrorCode) and no status")
        elif fault.code is not None and fault.status is None:
            fault.status = CATALOGUE[fault.code][0]
        if fault.status is not None and not 400 <= fault.status <= 599:
            raise AdminRefusal("status", "must be an HTTP error status (400-599)")
        if fault.latency_max_ms is not None and fault.latency_max_ms < fault.latency_ms:
            raise AdminRefusal("latency_max_ms", "must not be below latency_ms")
        if fault.code is None and fault.reset is None and fault.latency_ms == 0:
            raise AdminRefusal("code", "a fault needs an error, a latency or a reset")
        self._faults.append(fault)
        return fault

    def take(self, account_sid: str, sender: str, recipient: str) -> Fault | None:
        """The first rule this create meets (counted as met), if any."""
        for fault in self._faults:
            if fault.matches(account_sid, sender, recipient):
                fault.met += 1
                return fault
        return None

    def limit(self, spec: object) -> RateLimit:
        try:
            valid = RateLimitSpec.model_validate(spec)
        except ValidationError as error:
            raise named_error(error) from None
        limit = RateLimit(valid.account_sid, valid.sender, valid.per_second)
        self._limits = [
            known
            for known in self._limits
            if (known.account_sid, known.sender) != (limit.account_sid, limit.sender)
        ]
        self._limits.append(limit)
        return limit

    def admitted(self, account_sid: str, sender: str) -> bool:
        now = time.monotonic()
        return all(
            limit.admit(sender, now)
            for limit in self._limits
            if limit.account_sid == account_sid and limit.sender in (None, sender)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "faults": [fault.describe() for fault in self._faults],
            "rate_limits": [
                {"account_sid": r.account_sid, "sender": r.sender, "per_second": r.per_second}
                for r in self._limits
            ],
        }

    def clear(self) -> None:
        self._faults.clear()
        self._limits.clear()

    def remove(self, fault_id: int) -> bool:
        before = len(self._faults)
        self._faults = [fault for fault in self._faults if fault.id != fault_id]
        return len(self._faults) < before
