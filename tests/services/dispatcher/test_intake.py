"""Enqueue, EnqueueBatch and GetJob over a real socket, real Postgres and Redis, and a real
tenants service: bad input names its field and stores nothing; a job is rung on its sender's
stream only after its commit, and only once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry

from tests.services.dispatcher.service_testkit import (
    kill_jobs,
    make_settings,
    message,
    new_tenant,
    rung,
    tenant_token,
)
from tests.services.tenants.tenants_testkit import assert_refused
from tests.services.workers.workers_testkit import make_settings as workers_settings
from wamesh.common.v1 import content_pb2
from wamesh.dispatch.v1 import dispatch_pb2 as pb
from wamesh.dispatch.v1.dispatch_pb2_grpc import DispatcherStub
from wamesh.workers.v1 import workers_pb2
from wamesh.workers.v1.workers_pb2_grpc import WorkerRegistryStub
from wamesh_dispatcher.app import dispatcher_service
from wamesh_dispatcher.bell import session_id
from wamesh_dispatcher.settings import DispatcherSettings
from wamesh_dispatcher.store import JobStore
from wamesh_kit.db import make_engine
from wamesh_kit.localinfra import LocalRedis
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN
from wamesh_workers.app import workers_service

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
TEMPLATE = content_pb2.ContentTemplate(content_sid="HX" + "ab" * 16, variables={"1": "Ana"})


def _at(delta: timedelta) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) + delta)
    return stamp


async def _stats(admin: Any, tenant_id: str) -> list[Any]:
    return list((await admin.GetQueueStats(pb.GetQueueStatsRequest(tenant_id=tenant_id))).stats)


async def test_a_job_is_recorded_then_rung_on_its_senders_stream(
    internal: Any, admin: Any, tenants_admin: Any, redis_client: aioredis.Redis
) -> None:
    tenant_id, (sender,) = await new_tenant(tenants_admin)
    request = message(
        tenant_id,
        sender_number=f"whatsapp:{sender}",
        recipient_number="whatsapp:+34 600 111 222",
        priority=pb.PRIORITY_UNSPECIFIED,
    )

    response = await internal.Enqueue(request)

    job = response.job
    assert not response.already_existed
    assert (job.state, job.priority) == (pb.JOB_STATE_QUEUED, pb.PRIORITY_INTERACTIVE)
    assert (job.sender_number, job.recipient_number) == (sender, "+34600111222")
    assert (job.body, job.idempotency_key) == (request.body, request.idempotency_key)
    assert await rung(redis_client, tenant_id, sender) == [job.id]
    (stats,) = await _stats(admin, tenant_id)
    assert (stats.sender_number, stats.pending) == (sender, 1)


async def test_an_empty_sender_is_the_tenants_first_number(
    internal: Any, tenants_admin: Any, redis_client: aioredis.Redis
) -> None:
    tenant_id, (first, second) = await new_tenant(tenants_admin, senders=2)

    job = (await internal.Enqueue(message(tenant_id))).job
    chosen = (await internal.Enqueue(message(tenant_id, sender_number=second))).job

    assert (job.sender_number, chosen.sender_number) == (first, second)
    assert await rung(redis_client, tenant_id, second) == [chosen.id]


async def test_a_repeated_key_returns_the_job_and_queues_nothing(
    internal: Any, tenants_admin: Any, redis_client: aioredis.Redis
) -> None:
    tenant_id, (sender,) = await new_tenant(tenants_admin)
    request = message(tenant_id)

    first = await internal.Enqueue(request)
    again = await internal.Enqueue(request)

    assert again.already_existed
    assert not first.already_existed
    assert again.job.id == first.job.id
    assert await rung(redis_client, tenant_id, sender) == [first.job.id]


async def test_a_derived_key_drops_an_accidental_repeat(internal: Any, tenants_admin: Any) -> None:
    tenant_id, _ = await new_tenant(tenants_admin)
    request = message(tenant_id, idempotency_key="", derive_idempotency_key=True)
    other = message(
        tenant_id,
        idempotency_key="",
        derive_idempotency_key=True,
        recipient_number=request.recipient_number,
        body="something else",
    )

    first = await internal.Enqueue(request)
    again = await internal.Enqueue(request)
    different = await internal.Enqueue(other)

    assert first.job.idempotency_key.startswith("derived:")
    assert (again.job.id, again.already_existed) == (first.job.id, True)
    assert different.job.id != first.job.id


BAD_INPUT: list[tuple[str, dict[str, Any], str]] = [
    ("recipient not E.164", {"recipient_number": "600 111 222"}, "recipient_number"),
    ("no recipient", {"recipient_number": ""}, "recipient_number"),
    ("sender not E.164", {"sender_number": "whatsapp:abc"}, "sender_number"),
    ("no content", {"body": ""}, "body"),
    ("blank body", {"body": "   "}, "body"),
    ("body too long", {"body": "x" * 1601}, "body"),
    ("template beside a body", {"template": TEMPLATE}, "template"),
    (
        "a bad content sid",
        {"body": "", "template": content_pb2.ContentTemplate(content_sid="HX123")},
        "template.content_sid",
    ),
    (
        "a bad fallback",
        {"fallback_template": content_pb2.ContentTemplate(content_sid="MG" + "0" * 32)},
        "fallback_template.content_sid",
    ),
    (
        "media not http",
        {"media": [content_pb2.Media(url="ftp://cdn.example/a.jpg", content_type="image/jpeg")]},
        "media[0].url",
    ),
    ("no idempotency key", {"idempotency_key": ""}, "idempotency_key"),
    ("a key too long", {"idempotency_key": "k" * 201}, "idempotency_key"),
    ("years away", {"not_before": _at(timedelta(days=3 * 365))}, "not_before"),
    ("31 days away", {"not_before": _at(timedelta(days=31))}, "not_before"),
    ("an unknown priority", {"priority": 7}, "priority"),
]


@pytest.mark.parametrize(("case", "fields", "field"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
async def test_bad_input_names_its_field_and_stores_nothing(
    internal: Any,
    admin: Any,
    tenants_admin: Any,
    redis_client: aioredis.Redis,
    case: str,
    fields: dict[str, Any],
    field: str,
) -> None:
    tenant_id, (sender,) = await new_tenant(tenants_admin)

    await assert_refused(internal.Enqueue(message(tenant_id, **fields)), INVALID, field)

    assert await _stats(admin, tenant_id) == []
    assert await rung(redis_client, tenant_id, sender) == []


async def test_an_unknown_tenant_or_a_foreign_sender_is_not_found(
    internal: Any, admin: Any, tenants_admin: Any
) -> None:
    tenant_id, _ = await new_tenant(tenants_admin)
    _, (foreign,) = await new_tenant(tenants_admin)
    bare, _ = await new_tenant(tenants_admin, senders=0)

    await assert_refused(internal.Enqueue(message("t-nobody-here")), NOT_FOUND, "tenant_id")
    await assert_refused(
        internal.Enqueue(message(tenant_id, sender_number=foreign)), NOT_FOUND, "sender_number"
    )
    await assert_refused(
        internal.Enqueue(message(bare)), grpc.StatusCode.FAILED_PRECONDITION, "sender_number"
    )
    assert await _stats(admin, tenant_id) == []
    assert await _stats(admin, bare) == []


async def test_a_template_job_with_a_fallback_and_a_later_start(
    internal: Any, tenants_admin: Any
) -> None:
    tenant_id, _ = await new_tenant(tenants_admin)
    request = message(
        tenant_id,
        body="",
        template=TEMPLATE,
        fallback_template=TEMPLATE,
        priority=pb.PRIORITY_BULK,
        not_before=_at(timedelta(days=29)),
    )

    job = (await internal.Enqueue(request)).job

    assert job.template == TEMPLATE
    assert job.fallback_template == TEMPLATE
    assert job.priority == pb.PRIORITY_BULK
    assert job.HasField("not_before")


async def test_a_batch_is_recorded_whole_in_order(
    internal: Any, tenants_admin: Any, redis_client: aioredis.Redis
) -> None:
    tenant_id, (first, second) = await new_tenant(tenants_admin, senders=2)
    known = (await internal.Enqueue(message(tenant_id))).job
    requests = [
        message(tenant_id),
        message(tenant_id, sender_number=second),
        message(tenant_id, idempotency_key=known.idempotency_key),
        message(tenant_id),
    ]

    results = (await internal.EnqueueBatch(pb.EnqueueBatchRequest(jobs=requests))).results

    assert [r.job.idempotency_key for r in results] == [r.idempotency_key for r in requests]
    assert [r.already_existed for r in results] == [False, False, True, False]
    assert results[2].job.id == known.id
    assert await rung(redis_client, tenant_id, first) == [
        known.id,
        results[0].job.id,
        results[3].job.id,
    ]
    assert await rung(redis_client, tenant_id, second) == [results[1].job.id]


async def test_a_batch_with_one_bad_job_stores_none(
    internal: Any, admin: Any, tenants_admin: Any, redis_client: aioredis.Redis
) -> None:
    tenant_id, (sender,) = await new_tenant(tenants_admin)
    bad_number = [message(tenant_id), message(tenant_id, recipient_number="12")]
    foreign = [message(tenant_id), message("t-nobody-here")]

    await assert_refused(
        internal.EnqueueBatch(pb.EnqueueBatchRequest(jobs=bad_number)),
        INVALID,
        "jobs[1].recipient_number",
    )
    await assert_refused(
        internal.EnqueueBatch(pb.EnqueueBatchRequest(jobs=foreign)), NOT_FOUND, "jobs[1].tenant_id"
    )
    too_many = [message(tenant_id) for _ in range(501)]
    await assert_refused(
        internal.EnqueueBatch(pb.EnqueueBatchRequest(jobs=too_many)), INVALID, "jobs"
    )

    assert await _stats(admin, tenant_id) == []
    assert await rung(redis_client, tenant_id, sender) == []


async def test_enqueue_takes_the_internal_identity_only(
    connect: Any, admin: Any, tenants_admin: Any
) -> None:
    tenant_id, _ = await new_tenant(tenants_admin)
    for caller in (admin, connect(tenant_token(tenant_id))):
        await assert_refused(caller.Enqueue(message(tenant_id)), grpc.StatusCode.PERMISSION_DENIED)


async def test_get_job_by_id_or_key_with_its_attempts_within_its_tenant(
    internal: Any,
    admin: Any,
    connect: Any,
    tenants_admin: Any,
    dispatcher_dsn: str,
) -> None:
    tenant_id, _ = await new_tenant(tenants_admin)
    other_id, _ = await new_tenant(tenants_admin)
    job = (await internal.Enqueue(message(tenant_id))).job
    await kill_jobs(dispatcher_dsn, [job.id], 63018)

    by_id = (await admin.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=job.id))).job
    own = connect(tenant_token(tenant_id))
    by_key = (
        await own.GetJob(pb.GetJobRequest(tenant_id=tenant_id, idempotency_key=job.idempotency_key))
    ).job

    assert by_id == by_key
    assert (by_id.state, by_id.last_error_code) == (pb.JOB_STATE_DEAD, 63018)
    await assert_refused(
        admin.GetJob(pb.GetJobRequest(tenant_id=other_id, job_id=job.id)), NOT_FOUND, "job_id"
    )
    await assert_refused(
        admin.GetJob(pb.GetJobRequest(tenant_id=tenant_id, idempotency_key="nope")),
        NOT_FOUND,
        "idempotency_key",
    )
    await assert_refused(
        connect(tenant_token(other_id)).GetJob(
            pb.GetJobRequest(tenant_id=tenant_id, job_id=job.id)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await assert_refused(admin.GetJob(pb.GetJobRequest(tenant_id=tenant_id)), INVALID, "job_id")


async def test_get_job_shows_every_attempt(
    internal: Any, admin: Any, tenants_admin: Any, dispatcher_dsn: str
) -> None:
    from wamesh_dispatcher.store import Finish, JobStore
    from wamesh_kit.db import make_engine

    tenant_id, (sender,) = await new_tenant(tenants_admin)
    job_id = (await internal.Enqueue(message(tenant_id))).job.id
    engine = make_engine(dispatcher_dsn)
    try:
        store = JobStore(engine)
        at = datetime.now(UTC)
        await store.claim(tenant_id, sender, 1, at)
        row, _ = await store.job(tenant_id, job_id=job_id)
        begun = await store.begin_attempt(row, 1, at)
        assert begun is not None
        retry = Finish("retry", "retrying", at, 20429, "Too many requests", None, at)
        await store.finish_attempt(begun, 1, retry, at)
    finally:
        await engine.dispose()

    job = (await admin.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=job_id))).job

    assert job.state == pb.JOB_STATE_RETRYING
    (attempt,) = job.attempt_history
    assert (attempt.number, attempt.outcome, attempt.error_code) == (1, "retry", 20429)


async def test_enqueue_commits_and_answers_with_redis_away(
    dispatcher_dsn: str,
    settings: DispatcherSettings,
    own_redis: LocalRedis,
    tenants_admin: Any,
    grpc_channels: Callable[[int, str | None], Any],
) -> None:
    tenant_id, _ = await new_tenant(tenants_admin)
    away = make_settings(dispatcher_dsn, own_redis.url, tenants_target=settings.tenants_target)
    async with dispatcher_service(away, registry=CollectorRegistry()) as server:
        internal = DispatcherStub(grpc_channels(server.port, DEV_INTERNAL_TOKEN))
        admin = DispatcherStub(grpc_channels(server.port, DEV_ADMIN_TOKEN))
        own_redis.stop()

        response = await internal.Enqueue(message(tenant_id))

        stored = await admin.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=response.job.id))
        assert stored.job.state == pb.JOB_STATE_QUEUED


@pytest.fixture(scope="module")
def workers_dsn(new_database: Callable[[str], str]) -> str:
    dsn = new_database("workers")
    (history,) = [h for h in service_histories() if h.name == "workers"]
    upgrade_database(dsn, history)
    return dsn


async def test_a_new_sender_gets_its_session_in_the_workers_registry(
    dispatcher_dsn: str,
    workers_dsn: str,
    settings: DispatcherSettings,
    redis_url: str,
    tenants_admin: Any,
    grpc_channels: Callable[[int, str | None], Any],
) -> None:
    tenant_id, (sender,) = await new_tenant(tenants_admin)
    async with workers_service(
        workers_settings(workers_dsn, redis_url), registry=CollectorRegistry()
    ) as workers:
        placed = make_settings(
            dispatcher_dsn,
            redis_url,
            tenants_target=settings.tenants_target,
            workers_target=f"127.0.0.1:{workers.port}",
        )
        async with dispatcher_service(placed, registry=CollectorRegistry()) as server:
            internal = DispatcherStub(grpc_channels(server.port, DEV_INTERNAL_TOKEN))
            await internal.Enqueue(message(tenant_id))
            await internal.Enqueue(message(tenant_id))
            registry = WorkerRegistryStub(grpc_channels(workers.port, DEV_ADMIN_TOKEN))
            request = workers_pb2.ListSessionsRequest(tenant_id=tenant_id)
            for _ in range(100):
                sessions = (await registry.ListSessions(request)).sessions
                if sessions:
                    break
                await asyncio.sleep(0.05)

    assert [(s.id, s.kind) for s in sessions] == [(session_id(tenant_id, sender), "twilio")]


async def test_despite_opt_out_is_kept_with_the_job(
    internal: Any, tenants_admin: Any, dispatcher_dsn: str
) -> None:
    tenant_id, _ = await new_tenant(tenants_admin)
    confirmation = await internal.Enqueue(message(tenant_id, despite_opt_out=True))
    plain = await internal.Enqueue(message(tenant_id))

    engine = make_engine(dispatcher_dsn)
    try:
        store = JobStore(engine)
        kept, _ = await store.job(tenant_id, job_id=confirmation.job.id)
        other, _ = await store.job(tenant_id, job_id=plain.job.id)
    finally:
        await engine.dispose()
    assert (kept.despite_opt_out, other.despite_opt_out) == (True, False)
