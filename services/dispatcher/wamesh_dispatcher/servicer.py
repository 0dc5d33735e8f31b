"""The Dispatcher gRPC servicer: validation, access, and the doorbell after each commit.

Enqueue's order is the durability contract: check everything (nothing is stored on bad
input), commit the jobs to Postgres, and only then ring their senders' streams. A bell that
cannot ring (Redis away) does not fail the call: the job is committed, and the replica
sending for its sender reads its queue from Postgres again every reconcile interval.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from wamesh.dispatch.v1 import dispatch_pb2 as pb
from wamesh.dispatch.v1 import dispatch_pb2_grpc
from wamesh_dispatcher import bell, validation
from wamesh_dispatcher.mapping import job_message, stats_message
from wamesh_dispatcher.metrics import IntakeMetrics
from wamesh_dispatcher.store import JobStore, NewJob
from wamesh_dispatcher.tenants import SessionPlacer, TenantDirectory
from wamesh_kit.errors import FailedPrecondition, InvalidArgument, NotFound
from wamesh_kit.paging import PageTokens
from wamesh_kit.rpc.auth import Access, current_principal, require_tenant_access, requires
from wamesh_kit.telemetry import tag_tenant

log = logging.getLogger(__name__)
Context = Any
DEAD_PAGES = PageTokens[tuple[datetime, str]](datetime, str)


def now() -> datetime:
    return datetime.now(UTC)


def _prefix(index: int, batch: bool) -> str:
    return f"jobs[{index}]." if batch else ""


def _scope(tenant_id: str) -> str:
    """The tenant a stats or dead-letter call reads: a tenant token must name its own; only
    an admin may leave it empty for every tenant."""
    if current_principal().kind != "admin" and not tenant_id:
        raise InvalidArgument("is required with a tenant token", field="tenant_id")
    if tenant_id:
        require_tenant_access(tag_tenant(tenant_id))
    return tenant_id


def _sender_filter(tenant_id: str, sender_number: str) -> str:
    sender = validation.optional_number(sender_number, "sender_number")
    if sender and not tenant_id:
        raise InvalidArgument("needs tenant_id", field="sender_number")
    return sender


class Dispatcher(dispatch_pb2_grpc.DispatcherServicer):
    def __init__(
        self,
        store: JobStore,
        redis: aioredis.Redis,
        tenants: TenantDirectory,
        sessions: SessionPlacer,
        metrics: IntakeMetrics,
    ) -> None:
        self._store = store
        self._redis = redis
        self._tenants = tenants
        self._sessions = sessions
        self._metrics = metrics

    # -- intake ----------------------------------------------------------------------------

    @requires(Access.INTERNAL)
    async def Enqueue(self, request: pb.EnqueueRequest, context: Context) -> pb.EnqueueResponse:
        (result,) = await self._enqueue([request], batch=False)
        return result

    @requires(Access.INTERNAL)
    async def EnqueueBatch(
        self, request: pb.EnqueueBatchRequest, context: Context
    ) -> pb.EnqueueBatchResponse:
        validation.batch_size(len(request.jobs))
        return pb.EnqueueBatchResponse(results=await self._enqueue(request.jobs, batch=True))

    async def _enqueue(
        self, requests: Sequence[pb.EnqueueRequest], *, batch: bool
    ) -> list[pb.EnqueueResponse]:
        at = now()
        checked = [
            validation.job(request, at, _prefix(index, batch))
            for index, request in enumerate(requests)
        ]
        jobs = [
            await self._with_sender(job, _prefix(index, batch)) for index, job in enumerate(checked)
        ]
        recorded = await self._store.enqueue(jobs, at)
        fresh = [job for job, existed in recorded if not existed]
        await self._ring((job.tenant_id, job.sender_number, job.id) for job in fresh)
        for job in fresh:
            self._metrics.enqueued.labels(job.priority).inc()
        self._metrics.repeated.inc(len(recorded) - len(fresh))
        return [
            pb.EnqueueResponse(job=job_message(job), already_existed=existed)
            for job, existed in recorded
        ]

    async def _with_sender(self, job: NewJob, prefix: str) -> NewJob:
        """``job`` from one of its tenant's numbers: the one asked for, or the default."""
        numbers = await self._tenants.senders(tag_tenant(job.tenant_id), f"{prefix}tenant_id")
        if job.sender_number:
            if job.sender_number not in numbers:
                raise NotFound("is not one of the tenant's numbers", field=f"{prefix}sender_number")
            return job
        if not numbers:
            raise FailedPrecondition(
                "the tenant has no sender number yet", field=f"{prefix}sender_number"
            )
        return dataclasses.replace(job, sender_number=numbers[0])

    async def _ring(self, jobs: Iterable[tuple[str, str, str]]) -> None:
        """After the commit: each (tenant, sender, job id) on its sender's stream, one round
        trip per sender. A failure is counted, not raised: the jobs are durable already."""
        by_sender: dict[tuple[str, str], list[str]] = defaultdict(list)
        for tenant_id, sender, job_id in jobs:
            by_sender[(tenant_id, sender)].append(job_id)
        for (tenant_id, sender), job_ids in by_sender.items():
            try:
                await bell.ring(self._redis, tenant_id, sender, job_ids)
            except Exception as error:  # Redis away: the runner reconciles from Postgres
                self._metrics.bell_failures.inc(len(job_ids))
                log.warning(
                    "committed %d job(s) of %s/%s but could not ring their stream: %s",
                    len(job_ids),
                    tenant_id,
                    sender,
                    error,
                )
            self._sessions.ensure(tenant_id, sender)

    # -- reading ---------------------------------------------------------------------------

    @requires(Access.ADMIN | Access.TENANT | Access.INTERNAL)
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        tenant_id = validation.text(request.tenant_id, "tenant_id")
        require_tenant_access(tag_tenant(tenant_id))
        key = request.WhichOneof("key")
        if key == "job_id":
            found = await self._store.job(
                tenant_id, job_id=validation.text(request.job_id, "job_id")
            )
        elif key == "idempotency_key":
            found = await self._store.job(
                tenant_id,
                idempotency_key=validation.text(
                    request.idempotency_key, "idempotency_key", validation.MAX_KEY
                ),
            )
        else:
            raise InvalidArgument("job_id or idempotency_key is required", field="job_id")
        job, history = found
        return pb.GetJobResponse(job=job_message(job, history))

    @requires(Access.ADMIN | Access.TENANT)
    async def GetQueueStats(
        self, request: pb.GetQueueStatsRequest, context: Context
    ) -> pb.GetQueueStatsResponse:
        tenant_id = _scope(request.tenant_id)
        sender = _sender_filter(tenant_id, request.sender_number)
        stats = await self._store.stats(tenant_id, sender)
        return pb.GetQueueStatsResponse(stats=[stats_message(s) for s in stats])

    # -- dead letters ----------------------------------------------------------------------

    @requires(Access.ADMIN | Access.TENANT)
    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: Context
    ) -> pb.ListDeadLettersResponse:
        tenant_id = _scope(request.tenant_id)
        sender = _sender_filter(tenant_id, request.sender_number)
        code = validation.error_code(request.error_code)
        size = validation.page_size(request.page_size)
        query = ("dead", tenant_id, sender, str(code))
        before = DEAD_PAGES.decode(request.page_token, *query)
        rows = await self._store.dead_letters(tenant_id, sender, code, size + 1, before)
        page, more = rows[:size], len(rows) > size
        last = page[-1] if page else None
        token = ""
        if more and last is not None and last.dead_at is not None:
            token = DEAD_PAGES.encode((last.dead_at, last.id), *query)
        return pb.ListDeadLettersResponse(
            jobs=[job_message(job) for job in page], next_page_token=token
        )

    @requires(Access.ADMIN | Access.TENANT)
    async def RetryDeadLetters(
        self, request: pb.RetryDeadLettersRequest, context: Context
    ) -> pb.RetryDeadLettersResponse:
        # Required even for an admin: a retry never spans tenants (the contract).
        tenant_id = validation.text(request.tenant_id, "tenant_id")
        require_tenant_access(tag_tenant(tenant_id))
        retried = await self._store.retry_dead_jobs(
            tenant_id,
            validation.job_ids(request.job_ids),
            validation.optional_number(request.sender_number, "sender_number"),
            validation.error_code(request.error_code),
            now(),
        )
        await self._ring(retried)
        self._metrics.dead_retried.inc(len(retried))
        return pb.RetryDeadLettersResponse(retried_count=len(retried))

    @requires(Access.ADMIN | Access.TENANT)
    async def PurgeDeadLetters(
        self, request: pb.PurgeDeadLettersRequest, context: Context
    ) -> pb.PurgeDeadLettersResponse:
        tenant_id = validation.text(request.tenant_id, "tenant_id")
        require_tenant_access(tag_tenant(tenant_id))
        dead_before = (
            request.dead_before.ToDatetime(tzinfo=UTC) if request.HasField("dead_before") else None
        )
        purged = await self._store.purge_dead(
            tenant_id,
            validation.job_ids(request.job_ids),
            validation.optional_number(request.sender_number, "sender_number"),
            validation.error_code(request.error_code),
            dead_before,
        )
        self._metrics.dead_purged.inc(purged)
        return pb.PurgeDeadLettersResponse(purged_count=purged)
