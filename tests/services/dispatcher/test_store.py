"""The job store's sending path, one statement per batch of a sender's jobs: a batch begins
every job it may and passes over one whose recipient has an older job still to be sent;
a batch of finished attempts moves each job on and numbers its attempt by its history;
both are refused whole at an epoch the sender is no longer held at."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.services.dispatcher.runner_testkit import (
    Harness,
    engine,
    harness,
    recipient,
    redis,
    runner_dsn,
)
from wamesh_dispatcher.store import Fenced, Finish, JobRow, Template

__all__ = ["engine", "harness", "redis", "runner_dsn"]

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)


async def claimed(harness: Harness, epoch: int = 1) -> None:
    await harness.store.claim(harness.tenant, harness.sender, epoch, NOW)


async def test_a_batch_begins_each_recipients_oldest_job_and_passes_over_a_younger_one(
    harness: Harness,
) -> None:
    await claimed(harness)
    first, second, other = await harness.enqueue(
        (recipient(1), "first"), (recipient(1), "second"), (recipient(2), "other"), ring=False
    )

    begun = await harness.store.begin_attempts([second, other, first], 1, NOW)

    assert [row.id if row else None for row in begun] == [None, other.id, first.id]
    assert [(row.state, row.attempts) for row in begun if row] == [("sending", 1)] * 2
    assert await harness.states([first, second, other]) == {
        first.id: "sending",
        second.id: "queued",
        other.id: "sending",
    }


async def test_a_batch_is_fenced_whole_at_an_older_epoch(harness: Harness) -> None:
    await claimed(harness, epoch=2)
    rows = await harness.enqueue((recipient(3), "a"), (recipient(4), "b"), ring=False)

    with pytest.raises(Fenced):
        await harness.store.begin_attempts(rows, 1, NOW)

    assert set((await harness.states(rows)).values()) == {"queued"}


async def test_a_batch_is_one_senders(harness: Harness) -> None:
    [row] = await harness.enqueue((recipient(5), "a"), ring=False)

    with pytest.raises(ValueError, match="one sender"):
        await harness.store.begin_attempts(
            [row, replace(row, sender_number="+15550009999")], 1, NOW
        )


async def test_finished_attempts_move_each_job_on_and_number_its_history(
    harness: Harness,
) -> None:
    await claimed(harness)
    later = NOW + timedelta(seconds=30)
    fallback = Template("HX" + "0" * 32, {"1": "x"})
    sent, retried, refunded, fell_back = await harness.enqueue(
        (recipient(6), "sent"), (recipient(7), "retried"), (recipient(8), "refunded"), ring=False
    ) + await harness.enqueue((recipient(9), "fell back"), ring=False, fallback_template=fallback)
    rows = [
        row
        for row in await harness.store.begin_attempts([sent, retried, refunded, fell_back], 1, NOW)
        if row is not None
    ]

    await harness.store.finish_attempts(
        list(
            zip(
                rows,
                [
                    Finish("sent", "sent", NOW, provider_sid="SM" + "1" * 32),
                    Finish("retry", "retrying", NOW, 20429, "slow down", next_attempt_at=later),
                    Finish("paused", "queued", NOW, 20003, "no", refund=True),
                    Finish("window_closed", "queued", NOW, 63016, "closed", use_fallback=True),
                ],
                strict=True,
            )
        ),
        1,
        later,
    )

    found = [await harness.store.job(harness.tenant, job_id=row.id) for row in rows]
    jobs: list[JobRow] = [job for job, _ in found]
    assert [(j.state, j.attempts) for j in jobs] == [
        ("sent", 1),
        ("retrying", 1),
        ("queued", 0),
        ("queued", 1),
    ]
    assert (jobs[0].provider_sid, jobs[0].sent_at) == ("SM" + "1" * 32, later)
    assert (jobs[1].next_attempt_at, jobs[1].last_error_code) == (later, 20429)
    assert (jobs[3].template, jobs[3].body) == (fallback, "")
    assert [[(a.number, a.outcome) for a in history] for _, history in found] == [
        [(1, "sent")],
        [(1, "retry")],
        [(1, "paused")],
        [(1, "window_closed")],
    ]
    [again] = await harness.store.begin_attempts([jobs[1]], 1, later)
    assert again is not None
    await harness.store.finish_attempts([(again, Finish("sent", "sent", later))], 1, later)
    _, history = await harness.store.job(harness.tenant, job_id=again.id)
    assert [(a.number, a.outcome) for a in history] == [(1, "retry"), (2, "sent")]


async def test_finished_attempts_are_refused_whole_once_the_sender_is_taken_over(
    harness: Harness,
) -> None:
    await claimed(harness)
    rows = await harness.enqueue((recipient(10), "a"), (recipient(11), "b"), ring=False)
    begun = [row for row in await harness.store.begin_attempts(rows, 1, NOW) if row]
    await claimed(harness, epoch=2)

    with pytest.raises(Fenced):
        await harness.store.finish_attempts(
            [(row, Finish("sent", "sent", NOW)) for row in begun], 1, NOW
        )

    assert set((await harness.states(rows)).values()) == {"sending"}
    assert [len((await harness.store.job(harness.tenant, job_id=r.id))[1]) for r in rows] == [0, 0]
