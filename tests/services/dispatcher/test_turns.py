"""Which due job a sender starts first: interactive before bulk, oldest first, and every
fourth start to a waiting bulk job so a bulk backlog is never starved; offers not yet due,
replaced or withdrawn are not handed out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from wamesh_dispatcher.store import JobRow
from wamesh_dispatcher.turns import BULK_SHARE, Turns

NOW = datetime(2026, 12, 6, tzinfo=UTC)
BLANK = JobRow(
    id="",
    seq=0,
    tenant_id="t",
    idempotency_key="",
    sender_number="+14155238886",
    recipient_number="",
    body="x",
    media=(),
    template=None,
    fallback_template=None,
    priority="interactive",
    not_before=None,
    state="queued",
    attempts=0,
    last_error_code=0,
    last_error_message="",
    provider_sid=None,
    next_attempt_at=None,
    created_at=NOW,
    updated_at=NOW,
    sent_at=None,
    dead_at=None,
)


def job(seq: int, priority: str) -> JobRow:
    return replace(
        BLANK, id=f"j{seq}", seq=seq, recipient_number=f"+1555000{seq:04d}", priority=priority
    )


def offered(*jobs: JobRow, starts: int = 0) -> Turns:
    turns = Turns(starts)
    for each in jobs:
        turns.offer(each, due=0.0)
    return turns


def order(turns: Turns, now: float = 1.0) -> list[str]:
    """Every due job's id, in the order they would start."""
    found = []
    while (taken := turns.next(now)) is not None:
        turns.started(taken)
        found.append(taken.id)
    return found


def test_interactive_first_oldest_first_and_bulk_every_fourth_start() -> None:
    bulk = [job(n, "bulk") for n in range(1, 4)]
    interactive = [job(n, "interactive") for n in range(10, 20)]

    started = order(offered(*bulk, *reversed(interactive)))

    assert BULK_SHARE == 4
    assert started[:8] == ["j10", "j11", "j12", "j1", "j13", "j14", "j15", "j2"]
    assert sorted(started) == sorted(j.id for j in [*bulk, *interactive])


def test_bulk_alone_goes_oldest_first() -> None:
    assert order(offered(job(3, "bulk"), job(1, "bulk"), job(2, "bulk"), starts=5)) == [
        "j1",
        "j2",
        "j3",
    ]


def test_the_share_counts_on_from_earlier_starts() -> None:
    turns = offered(job(1, "bulk"), job(10, "interactive"), starts=3)

    assert order(turns) == ["j1", "j10"]  # the 4th start overall goes to the waiting bulk job


def test_an_offer_is_handed_out_once_due() -> None:
    turns = Turns()
    turns.offer(job(1, "interactive"), due=5.0)

    assert turns.next(4.0) is None
    assert turns.due_in(4.0) == 1.0
    assert order(turns, now=5.0) == ["j1"]
    assert turns.due_in(5.0) is None


def test_a_new_offer_replaces_the_recipients_last_and_a_withdrawn_one_goes() -> None:
    first = job(2, "interactive")
    older = replace(job(1, "interactive"), recipient_number=first.recipient_number)
    other = job(3, "interactive")
    turns = offered(first, other)
    turns.offer(older, due=0.0)  # an older job of the recipient came to light
    turns.withdraw(other.recipient_number)

    assert order(turns) == ["j1"]


def test_a_started_job_is_not_handed_out_again_until_offered_again() -> None:
    turns = offered(job(1, "interactive"))
    taken = turns.next(1.0)
    assert taken is not None
    turns.started(taken)

    assert turns.next(1.0) is None
    turns.offer(taken, due=0.0)
    assert order(turns) == ["j1"]


def test_offers_due_already_set_no_time_to_wait_for() -> None:
    turns = Turns()
    turns.offer(job(1, "interactive"), due=1.0)
    turns.offer(job(2, "bulk"), due=3.0)

    assert turns.due_in(2.0) == 1.0  # j1 is due and waits for a free place, not the clock
    turns.withdraw(job(2, "bulk").recipient_number)
    assert turns.due_in(2.0) is None
