"""The registry's own metrics, beside the kit's gRPC ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from wamesh_workers.store import Outcome

WORKER_STATES = ("active", "draining", "lost", "gone")
SESSION_STATES = ("pending", "assigned", "moving")


class RegistryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.workers = Gauge("wamesh_workers", "Workers by state", ["state"], registry=registry)
        self.sessions = Gauge(
            "wamesh_worker_sessions", "Sessions by state", ["state"], registry=registry
        )
        self.moves = Counter(
            "wamesh_worker_session_moves",
            "Sessions placed on a worker after another held them (loss, drain, rebalance, request)",
            registry=registry,
        )
        self.placements = Counter(
            "wamesh_worker_session_placements", "Sessions placed on a worker", registry=registry
        )
        self.lease_losses = Counter(
            "wamesh_worker_lease_losses",
            "Workers lost (lease expired or pod gone)",
            registry=registry,
        )
        self.placement_seconds = Histogram(
            "wamesh_worker_placement_seconds",
            "From a session starting to wait (created, its worker lost, or handed over) to its "
            "placement",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.sweep_seconds = Histogram(
            "wamesh_worker_sweep_seconds",
            "One placement round: reap leases, place what waits, rebalance",
            registry=registry,
        )

    def count(self, outcome: Outcome) -> None:
        for change in outcome.changes:
            if change.action == "assigned":
                self.placements.inc()
                if change.session.epoch > 1:
                    self.moves.inc()
                if change.waited is not None:
                    self.placement_seconds.observe(change.waited.total_seconds())
        self.lease_losses.inc(len(outcome.lost_workers))

    def census(self, workers: dict[str, int], sessions: dict[str, int]) -> None:
        for state in WORKER_STATES:
            self.workers.labels(state).set(workers.get(state, 0))
        for state in SESSION_STATES:
            self.sessions.labels(state).set(sessions.get(state, 0))
