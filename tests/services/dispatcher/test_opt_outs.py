"""A sender's runner, the real conversation store and the sandbox as Twilio: a job to a
recipient who opted out fails at once with 21610 and never reaches Twilio, unless it was
enqueued despite the opt-out; Twilio's own 21610 opts the recipient out, so their next job
is not tried."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc.aio
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

import wamesh_conversations
from tests.services.conversations.conversations_testkit import (
    make_settings as conversations_settings,
)
from tests.services.dispatcher.dispatcher_testkit import add_fault
from tests.services.dispatcher.runner_testkit import (
    Harness,
    bodies_to,
    engine,
    harness,
    recipient,
    redis,
    runner_dsn,
    running,
    whatsapp,
)
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1.conversations_pb2_grpc import ConversationStoreStub
from wamesh.events.v1 import events_pb2
from wamesh_conversations.app import conversations_service
from wamesh_dispatcher.backoff import Backoff
from wamesh_dispatcher.late_failures import STATUSES_STREAM, LateFailures
from wamesh_dispatcher.records import OutboundRecords
from wamesh_kit.migrations import MigrationHistory, upgrade_database
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN
from wamesh_kit.streams import StreamProducer

__all__ = ["engine", "harness", "redis", "runner_dsn"]

MIGRATIONS = Path(wamesh_conversations.__file__).parent / "migrations"


@pytest.fixture(scope="module")
def conversations_dsn(new_database: Callable[[str], str]) -> str:
    dsn = new_database("conversations")
    upgrade_database(dsn, MigrationHistory("conversations", MIGRATIONS))
    return dsn


@pytest.fixture
async def conversations(conversations_dsn: str, redis_url: str) -> AsyncIterator[GrpcService]:
    settings = conversations_settings(conversations_dsn, redis_url)
    async with conversations_service(settings, registry=CollectorRegistry()) as server:
        yield server


@pytest.fixture
def store(
    conversations: GrpcService, grpc_channels: Callable[[int, str | None], grpc.aio.Channel]
) -> Any:
    """The conversation store as the dispatcher calls it (the internal identity)."""
    return ConversationStoreStub(grpc_channels(conversations.port, DEV_INTERNAL_TOKEN))


@pytest.fixture
def reader(
    conversations: GrpcService, grpc_channels: Callable[[int, str | None], grpc.aio.Channel]
) -> Any:
    return ConversationStoreStub(grpc_channels(conversations.port, DEV_ADMIN_TOKEN))


@pytest.fixture
def records(store: Any) -> OutboundRecords:
    return OutboundRecords(store, timeout_s=5.0)


async def opt_out(store: Any, harness: Harness, n: int) -> None:
    await store.SetOptOut(
        pb.SetOptOutRequest(
            tenant_id=harness.tenant,
            participants=pb.ConversationKey(
                customer_number=recipient(n), sender_number=harness.sender
            ),
            opted_out=True,
            reason="STOP",
        )
    )


async def conversation(reader: Any, harness: Harness, n: int) -> pb.Conversation:
    key = pb.ConversationKey(customer_number=recipient(n), sender_number=harness.sender)
    request = pb.GetConversationRequest(tenant_id=harness.tenant, participants=key)
    found: pb.Conversation = (await reader.GetConversation(request)).conversation
    return found


async def stored_messages(reader: Any, harness: Harness, n: int) -> list[pb.Message]:
    """The conversation's messages, oldest first."""
    conversation_id = (await conversation(reader, harness, n)).id
    page = await reader.ListMessages(
        pb.ListMessagesRequest(tenant_id=harness.tenant, conversation_id=conversation_id)
    )
    return list(reversed(page.messages))


async def test_a_job_to_a_recipient_who_opted_out_fails_at_once_without_twilio(
    harness: Harness, store: Any, reader: Any, records: OutboundRecords
) -> None:
    await opt_out(store, harness, 30)
    async with running(harness, records=records):
        rows = await harness.enqueue((recipient(30), "promo"), (recipient(30), "another"))
        await harness.until(rows, lambda s: s == "failed")

    for row in rows:
        job, history = await harness.store.job(harness.tenant, job_id=row.id)
        assert (job.last_error_code, job.last_error_message) == (21610, "recipient opted out")
        assert [(a.outcome, a.error_code, a.provider_sid) for a in history] == [
            ("opted_out", 21610, None)
        ]
        assert job.attempts == 0  # no send at Twilio was spent
    assert await bodies_to(harness, 30) == []
    messages = await stored_messages(reader, harness, 30)
    assert [(m.body, m.status, m.error_code) for m in messages] == [
        ("promo", pb.MESSAGE_STATUS_FAILED, 21610),
        ("another", pb.MESSAGE_STATUS_FAILED, 21610),
    ]


async def test_a_job_enqueued_despite_the_opt_out_is_sent(
    harness: Harness, store: Any, reader: Any, records: OutboundRecords
) -> None:
    await opt_out(store, harness, 31)
    async with running(harness, records=records):
        confirmation = await harness.enqueue(
            (recipient(31), "You will get no more messages"), despite_opt_out=True
        )
        promo = await harness.enqueue((recipient(31), "promo"))
        await harness.until(confirmation + promo, lambda s: s in ("sent", "failed"))

    assert list((await harness.states(confirmation + promo)).values()) == ["sent", "failed"]
    assert await bodies_to(harness, 31) == ["You will get no more messages"]
    job, _ = await harness.store.job(harness.tenant, job_id=confirmation[0].id)
    assert job.despite_opt_out
    [sent, refused] = await stored_messages(reader, harness, 31)
    assert (sent.provider_sid, sent.error_code) == (job.provider_sid, 0)
    assert (refused.body, refused.error_code) == ("promo", 21610)


async def test_twilios_21610_opts_the_recipient_out_so_their_next_job_is_not_tried(
    harness: Harness, store: Any, reader: Any, records: OutboundRecords
) -> None:
    await add_fault(harness.sandbox, status=400, code=21610, count=None, recipient=whatsapp(32))
    async with running(harness, records=records):
        rows = await harness.enqueue((recipient(32), "first"), (recipient(32), "second"))
        await harness.until(rows, lambda s: s == "failed")

    first, first_history = await harness.store.job(harness.tenant, job_id=rows[0].id)
    second, second_history = await harness.store.job(harness.tenant, job_id=rows[1].id)
    assert [(a.outcome, a.error_code) for a in first_history] == [("failed", 21610)]
    assert first.attempts == 1
    assert first.last_error_message.startswith("recipient opted out")
    # Refused by the store, not by Twilio: the fault met the first create only.
    assert [(a.outcome, a.error_code) for a in second_history] == [("opted_out", 21610)]
    assert (second.attempts, second.last_error_message) == (0, "recipient opted out")
    assert await fault_met(harness) == 1
    assert (await conversation(reader, harness, 32)).opted_out


async def fault_met(harness: Harness) -> int:
    """How many creates the sandbox's one fault met."""
    async with httpx.AsyncClient(base_url=harness.sandbox.url, timeout=30) as http:
        response = await http.get("/sandbox/faults")
    assert response.status_code == 200, response.text
    [fault] = response.json()["faults"]
    met: int = fault["met"]
    return met


async def test_a_21610_reported_later_by_a_status_callback_opts_the_recipient_out(
    harness: Harness, store: Any, reader: Any, records: OutboundRecords, redis: aioredis.Redis
) -> None:
    async with running(harness, records=records):
        [job] = await harness.enqueue((recipient(33), "accepted, then refused"))
        await harness.until([job], lambda s: s == "sent")
    sent, _ = await harness.store.job(harness.tenant, job_id=job.id)
    event = events_pb2.MessageStatusEvent(
        tenant_id=harness.tenant,
        provider_sid=sent.provider_sid or "",
        idempotency_key=job.idempotency_key,
        status=pb.MESSAGE_STATUS_UNDELIVERED,
        error_code=21610,
        error_message="Attempt to send to unsubscribed recipient",
    )
    await StreamProducer(redis, STATUSES_STREAM).publish(event)
    consumer = LateFailures(harness.store, redis, Backoff(), records).consumer("test")
    await consumer.run_once(block=False)

    failed, _ = await harness.store.job(harness.tenant, job_id=job.id)
    assert (failed.state, failed.last_error_code) == ("failed", 21610)
    assert (await conversation(reader, harness, 33)).opted_out
