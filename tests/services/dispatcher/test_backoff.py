"""Back-off with full jitter, as properties over every attempt and every draw."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wamesh_dispatcher.backoff import Backoff

failed = st.integers(min_value=1, max_value=10_000)
draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
bases = st.floats(min_value=0.001, max_value=100.0)


@dataclass
class Fixed:
    """A random source that always draws the same value."""

    value: float

    def random(self) -> float:
        return self.value


@given(failed=failed, draw=draws)
def test_a_delay_is_the_draw_times_the_ceiling_within_zero_and_the_cap(
    failed: int, draw: float
) -> None:
    backoff = Backoff(source=Fixed(draw))

    delay = backoff.delay(failed)

    assert 0.0 <= delay <= backoff.ceiling(failed) <= 30.0
    assert delay == pytest.approx(draw * backoff.ceiling(failed))


@given(failed=failed, base=bases, extra=st.floats(min_value=0.0, max_value=1000.0))
def test_the_ceiling_never_passes_the_cap_and_never_falls(
    failed: int, base: float, extra: float
) -> None:
    backoff = Backoff(base_s=base, cap_s=base + extra)

    assert base <= backoff.ceiling(failed) <= backoff.cap_s
    assert backoff.ceiling(failed) <= backoff.ceiling(failed + 1)


@given(failed=st.integers(min_value=1, max_value=30), base=bases)
def test_below_the_cap_the_ceiling_doubles_per_failed_attempt(failed: int, base: float) -> None:
    backoff = Backoff(base_s=base, cap_s=base * 2.0**40)

    assert backoff.ceiling(failed) == pytest.approx(base * 2.0 ** (failed - 1))


def test_the_defaults_are_two_seconds_doubling_to_a_thirty_second_cap_over_five_attempts() -> None:
    backoff = Backoff()

    assert [backoff.ceiling(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert [backoff.exhausted(n) for n in range(1, 7)] == [False] * 4 + [True] * 2


@given(draw=draws)
def test_full_jitter_reaches_down_to_nothing(draw: float) -> None:
    # Full jitter, not "ceiling plus noise": a draw near 0 waits near 0.
    assert Backoff(source=Fixed(draw)).delay(5) == pytest.approx(draw * 30.0)


@pytest.mark.parametrize(
    "settings",
    [{"base_s": 0.0}, {"base_s": 5.0, "cap_s": 4.0}, {"attempts": 0}],
    ids=["no base", "cap below base", "no attempts"],
)
def test_settings_that_cannot_back_off_are_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings))):
        Backoff(**settings)  # type: ignore[arg-type]


def test_attempts_are_counted_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff().ceiling(0)
