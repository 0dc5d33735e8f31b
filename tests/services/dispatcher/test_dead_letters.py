"""Queue stats and the dead-letter admin API: filters, keyset paging, retry (rung again on
the senders' streams), purge, and what a tenant token may see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp

from tests.services.dispatcher.service_testkit import (
    kill_jobs,
    message,
    new_tenant,
    rung,
    tenant_token,
)
from tests.services.tenants.tenants_testkit import assert_refused
from wamesh.dispatch.v1 import dispatch_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def _dead_tenant(
    internal: Any, tenants_admin: Any, dsn: str, codes: list[int]
) -> tuple[str, list[str], list[str]]:
    """A tenant with two senders and one dead job per code, alternating senders; (tenant,
    senders, job ids in the order they died)."""
    tenant_id, senders = await new_tenant(tenants_admin, senders=2)
    requests = [message(tenant_id, sender_number=senders[index % 2]) for index in range(len(codes))]
    results = (await internal.EnqueueBatch(pb.EnqueueBatchRequest(jobs=requests))).results
    ids = [r.job.id for r in results]
    for index, (job_id, code) in enumerate(zip(ids, codes, strict=True)):
        await kill_jobs(dsn, [job_id], code, datetime.now(UTC) + timedelta(seconds=index))
    return tenant_id, senders, ids


async def test_dead_letters_page_most_recent_first_with_filters(
    internal: Any, admin: Any, tenants_admin: Any, dispatcher_dsn: str
) -> None:
    tenant_id, senders, ids = await _dead_tenant(
        internal, tenants_admin, dispatcher_dsn, [63018, 30003, 63018, 63018, 30003]
    )

    seen: list[str] = []
    token = ""
    while True:
        page = await admin.ListDeadLetters(
            pb.ListDeadLettersRequest(tenant_id=tenant_id, page_size=2, page_token=token)
        )
        assert len(page.jobs) <= 2
        seen += [job.id for job in page.jobs]
        token = page.next_page_token
        if not token:
            break
    by_code = await admin.ListDeadLetters(
        pb.ListDeadLettersRequest(tenant_id=tenant_id, error_code=30003)
    )
    by_sender = await admin.ListDeadLetters(
        pb.ListDeadLettersRequest(tenant_id=tenant_id, sender_number=f"whatsapp:{senders[1]}")
    )
    first = await admin.ListDeadLetters(pb.ListDeadLettersRequest(tenant_id=tenant_id, page_size=1))
    everyone = await admin.ListDeadLetters(pb.ListDeadLettersRequest(page_size=500))

    assert seen == ids[::-1]
    assert [job.id for job in by_code.jobs] == [ids[4], ids[1]]
    assert [job.id for job in by_sender.jobs] == [ids[3], ids[1]]
    assert set(ids) <= {job.id for job in everyone.jobs}
    await assert_refused(
        admin.ListDeadLetters(
            pb.ListDeadLettersRequest(
                tenant_id=tenant_id, error_code=63018, page_token=first.next_page_token
            )
        ),
        INVALID,
        "page_token",
    )


async def test_a_tenant_token_sees_only_its_own_tenant(
    internal: Any, connect: Any, tenants_admin: Any, dispatcher_dsn: str
) -> None:
    tenant_id, _, ids = await _dead_tenant(internal, tenants_admin, dispatcher_dsn, [63018])
    other_id, _ = await new_tenant(tenants_admin)
    own = connect(tenant_token(tenant_id))

    listed = await own.ListDeadLetters(pb.ListDeadLettersRequest(tenant_id=tenant_id))

    assert [job.id for job in listed.jobs] == ids
    await assert_refused(own.ListDeadLetters(pb.ListDeadLettersRequest()), INVALID, "tenant_id")
    await assert_refused(own.GetQueueStats(pb.GetQueueStatsRequest()), INVALID, "tenant_id")
    for call in (
        own.ListDeadLetters(pb.ListDeadLettersRequest(tenant_id=other_id)),
        own.GetQueueStats(pb.GetQueueStatsRequest(tenant_id=other_id)),
        own.RetryDeadLetters(pb.RetryDeadLettersRequest(tenant_id=other_id)),
        own.PurgeDeadLetters(pb.PurgeDeadLettersRequest(tenant_id=other_id)),
    ):
        await assert_refused(call, DENIED)
    await assert_refused(
        internal.ListDeadLetters(pb.ListDeadLettersRequest(tenant_id=tenant_id)), DENIED
    )


async def test_retry_queues_dead_jobs_again_and_rings_their_senders(
    internal: Any,
    admin: Any,
    tenants_admin: Any,
    dispatcher_dsn: str,
    redis_client: aioredis.Redis,
) -> None:
    tenant_id, senders, ids = await _dead_tenant(
        internal, tenants_admin, dispatcher_dsn, [63018, 30003, 63018, 30003]
    )
    before = {s: await rung(redis_client, tenant_id, s) for s in senders}

    one = await admin.RetryDeadLetters(
        pb.RetryDeadLettersRequest(tenant_id=tenant_id, job_ids=[ids[0]])
    )
    by_code = await admin.RetryDeadLetters(
        pb.RetryDeadLettersRequest(tenant_id=tenant_id, error_code=30003)
    )
    again = await admin.RetryDeadLetters(
        pb.RetryDeadLettersRequest(tenant_id=tenant_id, job_ids=[ids[0]])
    )

    assert (one.retried_count, by_code.retried_count, again.retried_count) == (1, 2, 0)
    assert await rung(redis_client, tenant_id, senders[0]) == [*before[senders[0]], ids[0]]
    assert await rung(redis_client, tenant_id, senders[1]) == [*before[senders[1]], ids[1], ids[3]]
    job = (await admin.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=ids[1]))).job
    assert (job.state, job.attempts, job.HasField("dead_at")) == (pb.JOB_STATE_QUEUED, 0, False)
    left = await admin.ListDeadLetters(pb.ListDeadLettersRequest(tenant_id=tenant_id))
    assert [j.id for j in left.jobs] == [ids[2]]
    await assert_refused(admin.RetryDeadLetters(pb.RetryDeadLettersRequest()), INVALID, "tenant_id")


async def test_purge_deletes_matching_dead_jobs_only(
    internal: Any, admin: Any, tenants_admin: Any, dispatcher_dsn: str
) -> None:
    tenant_id, senders, ids = await _dead_tenant(
        internal, tenants_admin, dispatcher_dsn, [63018, 30003, 63018, 30003]
    )
    alive = (await internal.Enqueue(message(tenant_id))).job
    cutoff = Timestamp()
    cutoff.FromDatetime(datetime.now(UTC) + timedelta(seconds=1, microseconds=500))

    early = await admin.PurgeDeadLetters(
        pb.PurgeDeadLettersRequest(tenant_id=tenant_id, dead_before=cutoff)
    )
    by_code = await admin.PurgeDeadLetters(
        pb.PurgeDeadLettersRequest(tenant_id=tenant_id, error_code=63018, sender_number=senders[0])
    )
    again = await admin.PurgeDeadLetters(
        pb.PurgeDeadLettersRequest(tenant_id=tenant_id, job_ids=[ids[0], ids[2]])
    )

    assert (early.purged_count, by_code.purged_count, again.purged_count) == (2, 1, 0)
    left = await admin.ListDeadLetters(pb.ListDeadLettersRequest(tenant_id=tenant_id))
    assert [j.id for j in left.jobs] == [ids[3]]
    still = await admin.GetJob(pb.GetJobRequest(tenant_id=tenant_id, job_id=alive.id))
    assert still.job.state == pb.JOB_STATE_QUEUED


async def test_queue_stats_per_sender_and_per_tenant(
    internal: Any, admin: Any, tenants_admin: Any, dispatcher_dsn: str
) -> None:
    tenant_id, senders, _ids = await _dead_tenant(
        internal, tenants_admin, dispatcher_dsn, [63018, 30003, 63018]
    )
    await internal.Enqueue(message(tenant_id, sender_number=senders[1]))

    per_sender = (await admin.GetQueueStats(pb.GetQueueStatsRequest(tenant_id=tenant_id))).stats
    one = (
        await admin.GetQueueStats(
            pb.GetQueueStatsRequest(tenant_id=tenant_id, sender_number=senders[1])
        )
    ).stats
    per_tenant = {
        s.tenant_id: s for s in (await admin.GetQueueStats(pb.GetQueueStatsRequest())).stats
    }

    assert [(s.sender_number, s.pending, s.dead) for s in per_sender] == sorted(
        [(senders[0], 0, 2), (senders[1], 1, 1)]
    )
    assert [(s.sender_number, s.pending) for s in one] == [(senders[1], 1)]
    assert one[0].HasField("oldest_pending_at")
    mine = per_tenant[tenant_id]
    assert (mine.sender_number, mine.pending, mine.dead) == ("", 1, 2 + 1)
    await assert_refused(
        admin.GetQueueStats(pb.GetQueueStatsRequest(sender_number=senders[0])),
        INVALID,
        "sender_number",
    )
