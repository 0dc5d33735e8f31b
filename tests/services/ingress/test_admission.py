"""The per-source budget under a flood of distinct sources: it remembers a bounded number of
them, forgetting the least recently seen one per newcomer, never scanning for idle ones.

Every budget here refills so slowly (a token per thousand seconds) that no source becomes
idle while a test runs: what is forgotten is forgotten for the bound, not for idleness."""

from __future__ import annotations

from wamesh_ingress.admission import SourceBudget

BOUND = 100
SLOW = 0.001  # tokens per second


def test_a_flood_of_distinct_sources_stays_within_the_bound() -> None:
    budget = SourceBudget(SLOW, 1, max_sources=BOUND)

    for n in range(10 * BOUND):
        assert budget.spend(f"flood-{n}") == 0.0  # each newcomer has its burst
        assert len(budget._buckets) <= BOUND, f"{len(budget._buckets)} sources after {n + 1}"


def test_past_the_bound_the_least_recently_seen_source_is_forgotten() -> None:
    budget = SourceBudget(SLOW, 1, max_sources=BOUND)
    for n in range(BOUND):
        budget.spend(f"source-{n}")  # each one's only token
    assert budget.spend("source-0") > 0  # out of budget, and now the most recently seen

    budget.spend("newcomer")

    assert budget.spend("source-0") > 0, "seen recently: still remembered"
    assert budget.spend("source-1") == 0.0, "the least recently seen: forgotten, so refilled"


def test_a_source_that_keeps_asking_is_remembered_through_a_flood_of_others() -> None:
    budget = SourceBudget(SLOW, 2, max_sources=BOUND)
    budget.spend("hot")
    budget.spend("hot")

    for n in range(10 * BOUND):
        budget.spend(f"flood-{n}")
        if n % (BOUND // 2) == 0:
            assert budget.spend("hot") > 0, f"forgotten after {n + 1} others"
