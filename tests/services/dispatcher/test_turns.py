"""Which due job a sender starts first: interactive before bulk, oldest first, and every
fourth start to a waiting bulk job so a bulk backlog is never starved."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from wamesh_dispatcher.runner import BULK_SHARE, in_turn
from wamesh_dispatcher.store import JobRow

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


def test_interactive_first_oldest_first_and_bulk_every_fourth_start() -> None:
    bulk = [job(n, "bulk") for n in range(1, 4)]
    interactive = [job(n, "interactive") for n in range(10, 20)]

    order = [j.id for j in in_turn([*bulk, *interactive], starts=0)]

    assert BULK_SHARE == 4
    assert order[:8] == ["j10", "j11", "j12", "j1", "j13", "j14", "j15", "j2"]
    assert sorted(order) == sorted(j.id for j in [*bulk, *interactive])


def test_bulk_alone_goes_oldest_first() -> None:
    order = [j.id for j in in_turn([job(3, "bulk"), job(1, "bulk"), job(2, "bulk")], starts=5)]

    assert order == ["j1", "j2", "j3"]


def test_the_share_counts_on_from_earlier_starts() -> None:
    order = [j.id for j in in_turn([job(1, "bulk"), job(10, "interactive")], starts=3)]

    assert order == ["j1", "j10"]  # the 4th start overall goes to the waiting bulk job
