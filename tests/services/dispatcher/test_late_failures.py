"""Failures Twilio reports after accepting a message, as the conversation store publishes them
on the statuses stream: a closed 24-hour window sends the job again as its fallback
template, or fails it without one; a repeated event changes nothing."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from tests.services.dispatcher.dispatcher_testkit import sandbox_messages
from tests.services.dispatcher.runner_testkit import (
    Harness,
    engine,
    harness,
    recipient,
    redis,
    runner_dsn,
    running,
    whatsapp,
)
from tests.tools.sandbox.sandbox_testkit import CONTENT_SID
from wamesh.conversations.v1 import conversations_pb2
from wamesh.events.v1 import events_pb2
from wamesh_dispatcher.backoff import Backoff
from wamesh_dispatcher.late_failures import STATUSES_STREAM, LateFailures
from wamesh_dispatcher.store import JobRow, Template
from wamesh_kit.streams import StreamProducer

__all__ = ["engine", "harness", "redis", "runner_dsn"]


async def failed_later(
    harness: Harness, redis_client: aioredis.Redis, job: JobRow, code: int, provider_sid: str
) -> None:
    """The event the conversation store publishes for a failure callback, handled once."""
    event = events_pb2.MessageStatusEvent(
        tenant_id=harness.tenant,
        provider_sid=provider_sid,
        idempotency_key=job.idempotency_key,
        status=conversations_pb2.MESSAGE_STATUS_UNDELIVERED,
        error_code=code,
        error_message="outside the allowed window",
    )
    await StreamProducer(redis_client, STATUSES_STREAM).publish(event)
    consumer = LateFailures(harness.store, redis_client, Backoff()).consumer("test")
    await consumer.run_once(block=False)


async def sid_of(harness: Harness, job: JobRow) -> str:
    found, _ = await harness.store.job(harness.tenant, job_id=job.id)
    return found.provider_sid or ""


async def test_a_closed_window_sends_the_fallback_template_and_a_repeat_changes_nothing(
    harness: Harness, redis: aioredis.Redis
) -> None:
    fallback = Template(CONTENT_SID, {"1": "Ada"})
    async with running(harness):
        [job] = await harness.enqueue((recipient(30), "free text"), fallback_template=fallback)
        await harness.until([job], lambda state: state == "sent")
        first_sid = await sid_of(harness, job)
        await failed_later(harness, redis, job, 63016, first_sid)
        async with asyncio.timeout(30):
            while len(await sandbox_messages(harness.sandbox, to=whatsapp(30))) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await harness.until([job], lambda state: state == "sent")
        # Delivered again (streams deliver at least once): the job moved on, nothing changes.
        await failed_later(harness, redis, job, 63016, first_sid)

    final, history = await harness.store.job(harness.tenant, job_id=job.id)
    first, second = await sandbox_messages(harness.sandbox, to=whatsapp(30))
    assert (first["body"], second["content_sid"]) == ("free text", CONTENT_SID)
    assert (final.state, final.provider_sid) == ("sent", second["sid"])
    assert [a.outcome for a in history] == ["sent", "window_closed", "sent"]


async def test_a_closed_window_without_a_fallback_fails_the_job(
    harness: Harness, redis: aioredis.Redis
) -> None:
    async with running(harness):
        [job] = await harness.enqueue((recipient(31), "too late"))
        await harness.until([job], lambda state: state == "sent")
        await failed_later(harness, redis, job, 63016, await sid_of(harness, job))

    final, history = await harness.store.job(harness.tenant, job_id=job.id)
    assert (final.state, final.last_error_code) == ("failed", 63016)
    assert [a.outcome for a in history] == ["sent", "window_closed"]
    assert len(await sandbox_messages(harness.sandbox, to=whatsapp(31))) == 1
