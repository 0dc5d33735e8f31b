"""The dispatcher's intake metrics, beside the kit's gRPC ones (the sending runner adds its own)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.enqueued = Counter(
            "wamesh_dispatch_jobs_enqueued",
            "Jobs recorded by Enqueue and EnqueueBatch",
            ["priority"],
            registry=registry,
        )
        self.repeated = Counter(
            "wamesh_dispatch_jobs_repeated",
            "Enqueued jobs whose idempotency key was known: nothing new was queued",
            registry=registry,
        )
        self.bell_failures = Counter(
            "wamesh_dispatch_bell_failures",
            "Committed jobs whose stream entry could not be appended (Redis away); the sending "
            "replica finds them when it reads Postgres again",
            registry=registry,
        )
        self.dead_retried = Counter(
            "wamesh_dispatch_dead_letters_retried",
            "Dead jobs queued again by RetryDeadLetters",
            registry=registry,
        )
        self.dead_purged = Counter(
            "wamesh_dispatch_dead_letters_purged",
            "Dead jobs deleted by PurgeDeadLetters",
            registry=registry,
        )
