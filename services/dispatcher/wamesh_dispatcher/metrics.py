"""The dispatcher's metrics, beside the kit's gRPC ones: intake, and sending."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from wamesh_dispatcher.store import JobStore

log = logging.getLogger(__name__)


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


class SendMetrics:
    """What the sending runners do, and how deep the queues are (for HPA / KEDA)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "wamesh_dispatch_attempts",
            "Calls to Twilio by how they ended (sent, found, retry, ambiguous, failed, paused, "
            "window_closed)",
            ["outcome"],
            registry=registry,
        )
        self.twilio_errors = Counter(
            "wamesh_dispatch_twilio_errors",
            "Failed attempts by Twilio error code (0: no code, e.g. a network error)",
            ["code"],
            registry=registry,
        )
        self.send_seconds = Histogram(
            "wamesh_dispatch_send_seconds",
            "From starting an attempt to recording its outcome",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.unsettled = Counter(
            "wamesh_dispatch_ambiguous_unsettled",
            "Creates that may have reached Twilio and whose lookup could not tell: the next "
            "attempt looks again, and may send twice if Twilio's list is behind",
            registry=registry,
        )
        self.rate_waits = Counter(
            "wamesh_dispatch_rate_limit_waits",
            "Times a sender had due jobs but no token left in its rate",
            registry=registry,
        )
        self.jobs = Gauge(
            "wamesh_dispatch_jobs",
            "Jobs by tenant and state",
            ["tenant", "state"],
            registry=registry,
        )
        self.oldest_queued = Gauge(
            "wamesh_dispatch_oldest_queued_seconds",
            "Age of the tenant's oldest queued job (0: none)",
            ["tenant"],
            registry=registry,
        )


async def count_jobs(
    store: JobStore, metrics: SendMetrics, stop: asyncio.Event, every_s: float
) -> None:
    """Jobs by tenant and state, and each tenant's oldest queued job's age, every
    ``every_s``: what an autoscaler reads. From Postgres, the truth, on every replica."""
    while not stop.is_set():
        try:
            stats = await store.stats("", "")
        except Exception:  # Postgres away: the gauges keep their last values meanwhile
            log.warning("counting jobs failed", exc_info=True)
        else:
            now = datetime.now(UTC)
            metrics.jobs.clear()
            metrics.oldest_queued.clear()
            for tenant in stats:
                for state, count in tenant.counts.items():
                    metrics.jobs.labels(tenant.tenant_id, state).set(count)
                oldest = tenant.oldest_pending_at
                age = (now - oldest).total_seconds() if oldest is not None else 0.0
                metrics.oldest_queued.labels(tenant.tenant_id).set(age)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
