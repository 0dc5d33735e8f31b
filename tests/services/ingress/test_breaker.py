"""The store breaker on its own, with a clock the test moves."""

from __future__ import annotations

from tests.clock import Clock
from wamesh_ingress.breaker import StoreBreaker


def test_after_a_failure_nobody_tries_until_the_wait_is_over_then_one_probe() -> None:
    clock = Clock(100.0)
    breaker = StoreBreaker(1.0, probe_timeout_s=5.0, clock=clock)
    assert breaker.allows()
    assert breaker.allows()

    breaker.failed()
    assert not breaker.allows()
    clock.now += 1.0
    assert breaker.allows()  # the probe
    assert not breaker.allows()  # the others still spill while it runs
    breaker.succeeded()
    assert breaker.allows()
    assert breaker.allows()
    assert not breaker.is_open


def test_a_failed_probe_opens_it_again_and_a_silent_one_is_forgotten() -> None:
    clock = Clock(100.0)
    breaker = StoreBreaker(1.0, probe_timeout_s=5.0, clock=clock)
    breaker.failed()
    clock.now += 1.0
    assert breaker.allows()
    breaker.failed()
    assert not breaker.allows()
    clock.now += 1.0
    assert breaker.allows()  # a probe that will never report
    clock.now += 4.9
    assert not breaker.allows()
    clock.now += 0.2
    assert breaker.allows()  # the next probe
