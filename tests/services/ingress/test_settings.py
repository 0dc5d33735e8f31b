"""Ingress settings that could not keep the answer bound are refused at start, named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wamesh_ingress.settings import IngressSettings


def test_an_answer_bound_with_no_time_left_to_spill_is_refused() -> None:
    with pytest.raises(ValidationError, match="WAMESH_ANSWER_WITHIN_S"):
        IngressSettings(answer_within_s=3.0, redis_pool_timeout_s=1.0, redis_timeout_s=1.0)


def test_an_answer_bound_twilio_would_not_wait_for_is_refused() -> None:
    with pytest.raises(ValidationError, match="answer_within_s"):
        IngressSettings(answer_within_s=15.0)


def test_the_defaults_leave_the_store_three_seconds_and_the_spill_two() -> None:
    settings = IngressSettings()
    assert settings.answer_within_s == 5.0
    assert settings.spill_reserve_s == 2.0
