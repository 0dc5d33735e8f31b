"""The error table, read entry by entry: what each Twilio failure makes the dispatcher do."""

from __future__ import annotations

import pytest

from wamesh_dispatcher.outcomes import Action, Cause, Failure, classify


@pytest.mark.parametrize(
    ("status", "code", "action"),
    [
        (429, 20429, Action.RETRY),
        (429, 63018, Action.RETRY),
        (400, 21211, Action.FINAL),
        (400, 21614, Action.FINAL),
        (400, 63003, Action.FINAL),
        (400, 63014, Action.FINAL),
        (400, 63021, Action.FINAL),
        (400, 21610, Action.OPT_OUT),
        (400, 63016, Action.WINDOW_CLOSED),
        (401, 20003, Action.PAUSE_SENDER),
        (400, 63007, Action.PAUSE_SENDER),
        (400, 21999, Action.FINAL),  # a 4xx the table does not know
        (404, None, Action.FINAL),
        (401, None, Action.PAUSE_SENDER),
        (429, None, Action.RETRY),
        (302, None, Action.FINAL),
    ],
)
@pytest.mark.parametrize("creating", [True, False])
def test_an_answer_is_classified_by_its_code_then_its_status(
    status: int, code: int | None, action: Action, creating: bool
) -> None:
    outcome = classify(Failure("refused", status=status, code=code), creating=creating)

    assert outcome.action is action
    assert (outcome.code, outcome.message) == (code, "refused")


@pytest.mark.parametrize(("status", "code"), [(500, 20500), (503, 20503), (502, None)])
def test_a_5xx_is_ambiguous_on_a_create_and_retried_elsewhere(
    status: int, code: int | None
) -> None:
    failure = Failure("server error", status=status, code=code)

    assert classify(failure, creating=True).action is Action.AMBIGUOUS
    assert classify(failure, creating=False).action is Action.RETRY


@pytest.mark.parametrize("cause", [Cause.TIMEOUT, Cause.RESET])
def test_a_lost_answer_is_ambiguous_on_a_create_and_retried_elsewhere(cause: Cause) -> None:
    failure = Failure("gone", transport=cause)

    assert classify(failure, creating=True).action is Action.AMBIGUOUS
    assert classify(failure, creating=False).action is Action.RETRY


@pytest.mark.parametrize("creating", [True, False])
def test_a_connection_that_never_opened_is_retried_without_a_lookup(creating: bool) -> None:
    outcome = classify(Failure("refused", transport=Cause.CONNECT), creating=creating)

    assert outcome.action is Action.RETRY


def test_the_transport_decides_over_a_code_that_came_with_it() -> None:
    # A reset carries no answer, so a code here can only be stale: the reset decides.
    failure = Failure("gone", code=21211, transport=Cause.RESET)

    assert classify(failure, creating=True).action is Action.AMBIGUOUS


def test_the_outcome_names_the_reason_for_the_code() -> None:
    outcome = classify(Failure("Invalid 'To'", status=400, code=21211), creating=True)

    assert outcome.reason == "invalid recipient"
