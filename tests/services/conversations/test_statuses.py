"""Delivery statuses: forward only, in any arrival order, even before their message exists."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, TypeAlias

import grpc
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.redis_streams import stream_entries
from tests.services.conversations.conversations_testkit import (
    assert_refused,
    number,
    outbound,
    sid,
    tenant,
)
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.events.v1 import events_pb2
from wamesh_conversations import statuses
from wamesh_conversations.outbox import OutboxRelay
from wamesh_conversations.schema import pending_statuses
from wamesh_conversations.store import STATUSES_STREAM
from wamesh_kit.db import make_engine
from wamesh_kit.redis_client import make_redis

Status: TypeAlias = pb.MessageStatus.ValueType
SENT, DELIVERED, READ, FAILED = (
    pb.MESSAGE_STATUS_SENT,
    pb.MESSAGE_STATUS_DELIVERED,
    pb.MESSAGE_STATUS_READ,
    pb.MESSAGE_STATUS_FAILED,
)
ORDERINGS = [
    ordering
    for size in range(1, 5)
    for subset in itertools.combinations((SENT, DELIVERED, READ, FAILED), size)
    for ordering in itertools.permutations(subset)
]


def expected_final(ordering: tuple[Status, ...]) -> Status:
    return FAILED if FAILED in ordering else max(ordering)


async def sent_message(internal: Any, tenant_id: str) -> pb.Message:
    request = outbound(tenant_id, number(), number())
    await internal.RecordOutbound(request)
    update = pb.UpdateOutboundRequest(
        tenant_id=tenant_id,
        idempotency_key=request.idempotency_key,
        provider_sid=sid(),
        status=pb.MESSAGE_STATUS_QUEUED,
    )
    message: pb.Message = (await internal.UpdateOutbound(update)).message
    return message


def callback(tenant_id: str, provider_sid: str, status: Status) -> pb.RecordStatusRequest:
    failed = status == FAILED
    return pb.RecordStatusRequest(
        tenant_id=tenant_id,
        provider_sid=provider_sid,
        status=status,
        error_code=63016 if failed else 0,
        error_message="outside the 24 hour window" if failed else "",
    )


async def test_every_arrival_order_ends_in_the_same_state(internal: Any) -> None:
    tenant_id = tenant()
    for ordering in ORDERINGS:
        message = await sent_message(internal, tenant_id)
        outcomes = []
        for status in ordering:
            response = await internal.RecordStatus(
                callback(tenant_id, message.provider_sid, status)
            )
            outcomes.append(response.outcome)
            final = response.message

        assert final.status == expected_final(ordering), ordering
        assert final.error_code == (63016 if FAILED in ordering else 0), ordering
        # What was applied is in the history, in the order it was applied; nothing else.
        applied = [s for s, o in zip(ordering, outcomes, strict=True) if o == 1]
        assert [c.status for c in final.status_history][2:] == applied, ordering
        assert all(
            o in (pb.RECORD_STATUS_OUTCOME_APPLIED, pb.RECORD_STATUS_OUTCOME_STALE)
            for o in outcomes
        )


async def test_a_late_delivered_after_read_changes_nothing(internal: Any) -> None:
    tenant_id = tenant()
    message = await sent_message(internal, tenant_id)
    await internal.RecordStatus(callback(tenant_id, message.provider_sid, READ))

    late = await internal.RecordStatus(callback(tenant_id, message.provider_sid, DELIVERED))

    assert late.outcome == pb.RECORD_STATUS_OUTCOME_STALE
    assert late.message.status == READ
    repeat = await internal.RecordStatus(callback(tenant_id, message.provider_sid, READ))
    assert repeat.outcome == pb.RECORD_STATUS_OUTCOME_STALE
    assert len(repeat.message.status_history) == len(late.message.status_history)


@pytest.mark.parametrize("arrivals", [(DELIVERED,), (SENT, READ), (FAILED, DELIVERED)])
async def test_statuses_that_beat_the_send_response_are_applied_when_it_arrives(
    internal: Any, arrivals: tuple[Status, ...]
) -> None:
    tenant_id = tenant()
    request = outbound(tenant_id, number(), number())
    await internal.RecordOutbound(request)
    provider_sid = sid()
    for status in arrivals:
        early = await internal.RecordStatus(callback(tenant_id, provider_sid, status))
        assert early.outcome == pb.RECORD_STATUS_OUTCOME_DEFERRED
        assert not early.HasField("message")

    attached = await internal.UpdateOutbound(
        pb.UpdateOutboundRequest(
            tenant_id=tenant_id,
            idempotency_key=request.idempotency_key,
            provider_sid=provider_sid,
            status=pb.MESSAGE_STATUS_QUEUED,
        )
    )

    assert attached.message.status == expected_final(arrivals)
    # Applied once: a later repeat of a kept-aside status is stale.
    again = await internal.RecordStatus(callback(tenant_id, provider_sid, arrivals[-1]))
    assert again.outcome == pb.RECORD_STATUS_OUTCOME_STALE


async def test_a_failure_is_published_for_the_dispatcher(
    internal: Any, redis_client: aioredis.Redis
) -> None:
    tenant_id = tenant()
    message = await sent_message(internal, tenant_id)
    await internal.RecordStatus(callback(tenant_id, message.provider_sid, SENT))
    await internal.RecordStatus(callback(tenant_id, message.provider_sid, FAILED))
    await internal.RecordStatus(callback(tenant_id, message.provider_sid, FAILED))

    events = []
    for _ in range(100):
        entries = await stream_entries(redis_client, STATUSES_STREAM)
        events = [
            events_pb2.MessageStatusEvent.FromString(fields[b"payload"]) for _, fields in entries
        ]
        if any(e.provider_sid == message.provider_sid for e in events):
            break
        await asyncio.sleep(0.02)  # the relay publishes right after the commit
    mine = [e for e in events if e.provider_sid == message.provider_sid]
    assert len(mine) == 1
    assert mine[0].status == FAILED
    assert mine[0].error_code == 63016
    assert mine[0].idempotency_key == message.idempotency_key


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": pb.MESSAGE_STATUS_UNSPECIFIED}, "status"),
        ({"status": 99}, "status"),
        ({"status": pb.MESSAGE_STATUS_RECEIVED}, "status"),
        ({"provider_sid": ""}, "provider_sid"),
        ({"provider_sid": "not-a-sid"}, "provider_sid"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"error_message": "x" * 5000}, "error_message"),
    ],
)
async def test_bad_callbacks_are_refused_naming_the_field(
    internal: Any, change: dict[str, Any], field: str
) -> None:
    request = callback(tenant(), sid(), DELIVERED)
    for name, value in change.items():
        setattr(request, name, value)
    await assert_refused(internal.RecordStatus(request), grpc.StatusCode.INVALID_ARGUMENT, field)


@given(st.lists(st.sampled_from(sorted(statuses.OUTBOUND_STATUSES)), min_size=1, max_size=8))
def test_the_final_state_does_not_depend_on_arrival_order(arrivals: list[Status]) -> None:
    def settle(order: list[Status]) -> Status:
        status = pb.MESSAGE_STATUS_PENDING
        for new in order:
            if statuses.advances(status, new):
                status = new
        return status

    finals = [s for s in arrivals if s in statuses.FINAL]
    if len(set(finals)) > 1:
        return  # two different final statuses: the first one stays, by design
    assert settle(arrivals) == settle(sorted(arrivals, key=statuses.order_key))


async def kept_aside(engine: AsyncEngine, tenant_id: str) -> set[str]:
    """The SIDs of ``tenant_id``'s statuses still waiting for their message."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            sa.select(pending_statuses.c.provider_sid).where(
                pending_statuses.c.tenant_id == tenant_id
            )
        )
        return {provider_sid for (provider_sid,) in rows}


async def age_kept_aside(engine: AsyncEngine, provider_sid: str, days: int) -> None:
    """Pretend the statuses of ``provider_sid`` were kept aside ``days`` ago."""
    async with engine.begin() as connection:
        await connection.execute(
            sa.update(pending_statuses)
            .where(pending_statuses.c.provider_sid == provider_sid)
            .values(created_at=sa.func.now() - timedelta(days=days))
        )


@pytest.fixture
async def engine(conversations_dsn: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(conversations_dsn, pool_size=2)
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_statuses_kept_aside_past_their_retention_are_swept_by_the_relay(
    internal: Any, engine: AsyncEngine, redis_url: str
) -> None:
    tenant_id = tenant()
    expired = outbound(tenant_id, number(), number())
    recent = outbound(tenant_id, number(), number())
    expired_sid, recent_sid = sid(), sid()
    for request, provider_sid in ((expired, expired_sid), (recent, recent_sid)):
        await internal.RecordOutbound(request)
        early = await internal.RecordStatus(callback(tenant_id, provider_sid, DELIVERED))
        assert early.outcome == pb.RECORD_STATUS_OUTCOME_DEFERRED
    # Either side of the default retention, a week: the relay as app.py builds it today.
    await age_kept_aside(engine, expired_sid, days=8)
    await age_kept_aside(engine, recent_sid, days=6)
    redis = make_redis(redis_url)
    relay = OutboxRelay(
        engine, redis, batch_size=100, poll_s=0.05, retention_s=86_400, registry=CollectorRegistry()
    )
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        for _ in range(100):  # its first round sweeps
            if expired_sid not in await kept_aside(engine, tenant_id):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running
        await redis.aclose()

    assert await kept_aside(engine, tenant_id) == {recent_sid}
    # The swept status is gone for good; the one within its retention still lands.
    for request, provider_sid, status in (
        (expired, expired_sid, pb.MESSAGE_STATUS_QUEUED),
        (recent, recent_sid, DELIVERED),
    ):
        attached = await internal.UpdateOutbound(
            pb.UpdateOutboundRequest(
                tenant_id=tenant_id,
                idempotency_key=request.idempotency_key,
                provider_sid=provider_sid,
                status=pb.MESSAGE_STATUS_QUEUED,
            )
        )
        assert attached.message.status == status
