"""A sender's runner against the sandbox as Twilio, over real Postgres and Redis: every job
sent once, each recipient's in enqueue order; each failure class to its outcome; a create
whose answer was lost found rather than sent again; a runner whose sender was taken over
stops; jobs whose doorbell Redis never rang are sent all the same."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.services.dispatcher.dispatcher_testkit import add_fault, sandbox_messages
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
from tests.tools.sandbox.sandbox_testkit import ACCOUNT
from wamesh.conversations.v1.conversations_pb2_grpc import ConversationStoreStub
from wamesh_dispatcher.records import OutboundRecords
from wamesh_dispatcher.runner import Account, SenderLimits
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_INTERNAL_TOKEN

__all__ = ["engine", "harness", "redis", "runner_dsn"]


async def test_every_job_is_sent_once_and_each_recipient_in_enqueue_order(
    harness: Harness,
) -> None:
    order = [(recipient(r), f"r{r}-n{n}") for n in range(8) for r in range(4)]
    async with running(harness):
        rows = await harness.enqueue(*order)
        await harness.until(rows, lambda s: s == "sent")

    for r in range(4):
        got = [
            m["body"]
            for m in await sandbox_messages(harness.sandbox, to=f"whatsapp:{recipient(r)}")
        ]
        assert got == [f"r{r}-n{n}" for n in range(8)]
    for row in rows:
        job, history = await harness.store.job(harness.tenant, job_id=row.id)
        assert [(a.number, a.outcome) for a in history] == [(1, "sent")]
        assert (job.provider_sid or "").startswith("SM")


async def test_a_job_redis_never_announced_is_sent_from_postgres(harness: Harness) -> None:
    async with running(harness):
        rows = await harness.enqueue((recipient(10), "quiet"), ring=False)
        await harness.until(rows, lambda s: s == "sent")

    assert [
        m["body"] for m in await sandbox_messages(harness.sandbox, to=f"whatsapp:{recipient(10)}")
    ] == ["quiet"]


async def test_a_rate_limited_send_backs_off_and_goes_out_once(harness: Harness) -> None:
    await add_fault(harness.sandbox, status=429, code=20429, count=1)
    async with running(harness):
        rows = await harness.enqueue((recipient(11), "later"))
        await harness.until(rows, lambda s: s == "sent")

    _, history = await harness.store.job(harness.tenant, job_id=rows[0].id)
    assert [(a.outcome, a.error_code) for a in history] == [("retry", 20429), ("sent", 0)]
    assert len(await sandbox_messages(harness.sandbox, to=whatsapp(11))) == 1


async def test_a_server_error_is_looked_up_then_retried_and_dead_once_exhausted(
    harness: Harness,
) -> None:
    await add_fault(harness.sandbox, status=500, code=20500, count=None, recipient=whatsapp(12))
    async with running(harness):
        rows = await harness.enqueue((recipient(12), "doomed"), (recipient(13), "fine"))
        await harness.until(rows, lambda s: s in ("sent", "dead"))

    dead, history = await harness.store.job(harness.tenant, job_id=rows[0].id)
    fine, _ = await harness.store.job(harness.tenant, job_id=rows[1].id)
    assert (dead.state, dead.last_error_code, fine.state) == ("dead", 20500, "sent")
    # Each 500 left the create in doubt; each lookup found nothing, so each was a retry.
    assert [(a.outcome, a.error_code) for a in history] == [("retry", 20500)] * 3


async def test_a_tenants_own_attempts_limit_decides_when_a_job_is_dead(
    harness: Harness,
) -> None:
    await add_fault(harness.sandbox, status=500, code=20500, count=None, recipient=whatsapp(15))

    async def two_attempts(_: str) -> SenderLimits:
        return SenderLimits(messages_per_second=500.0, recipient_interval_s=0.0, max_attempts=2)

    async with running(harness, limits=two_attempts):
        rows = await harness.enqueue((recipient(15), "doomed"))
        await harness.until(rows, lambda s: s == "dead")

    _, history = await harness.store.job(harness.tenant, job_id=rows[0].id)
    # The dispatcher's own setting is 3 attempts here; the tenant's 2 wins.
    assert [(a.outcome, a.error_code) for a in history] == [("retry", 20500)] * 2


async def test_a_final_refusal_fails_at_once_and_the_recipients_next_job_goes_on(
    harness: Harness,
) -> None:
    await add_fault(harness.sandbox, status=400, code=21211, count=1, recipient=whatsapp(14))
    async with running(harness):
        rows = await harness.enqueue((recipient(14), "first"), (recipient(14), "second"))
        await harness.until(rows, lambda s: s in ("sent", "failed"))

    states = await harness.states(rows)
    _, history = await harness.store.job(harness.tenant, job_id=rows[0].id)
    assert list(states.values()) == ["failed", "sent"]
    assert [(a.outcome, a.error_code) for a in history] == [("failed", 21211)]


async def test_a_create_whose_answer_was_cut_off_is_found_not_sent_again(
    harness: Harness,
) -> None:
    await add_fault(harness.sandbox, reset="after", count=1, recipient=whatsapp(15))
    async with running(harness):
        rows = await harness.enqueue((recipient(15), "once"))
        await harness.until(rows, lambda s: s == "sent")

    job, history = await harness.store.job(harness.tenant, job_id=rows[0].id)
    [message] = await sandbox_messages(harness.sandbox, to=whatsapp(15))
    assert [a.outcome for a in history] == ["found"]
    assert job.provider_sid == message["sid"]


async def test_refused_credentials_pause_the_sender_without_burning_the_attempt(
    harness: Harness,
) -> None:
    await add_fault(harness.sandbox, status=401, code=20003, count=1)
    async with running(harness):
        rows = await harness.enqueue((recipient(16), "after the pause"))
        await harness.until(rows, lambda s: s == "sent")

    job, history = await harness.store.job(harness.tenant, job_id=rows[0].id)
    assert [(a.number, a.outcome) for a in history] == [(1, "paused"), (2, "sent")]
    assert job.attempts == 1


async def test_a_runner_whose_sender_was_taken_over_stops_sending(harness: Harness) -> None:
    async with running(harness, epoch=7) as runner:
        first = await harness.enqueue((recipient(17), "before"))
        await harness.until(first, lambda s: s == "sent")
        await harness.store.claim(harness.tenant, harness.sender, 8, datetime.now(UTC))
        await harness.enqueue((recipient(17), "after"))
        async with asyncio.timeout(30):
            while not runner.stopped:  # noqa: ASYNC110 - the runner's own task sets it
                await asyncio.sleep(0.05)

    bodies = [
        m["body"] for m in await sandbox_messages(harness.sandbox, to=f"whatsapp:{recipient(17)}")
    ]
    assert bodies == ["before"]


async def test_nothing_is_sent_while_the_conversation_store_cannot_record_it(
    harness: Harness,
) -> None:
    # Nothing listens on port 1: every RecordOutbound fails as an outage does.
    async with make_channel("127.0.0.1:1", token=DEV_INTERNAL_TOKEN) as channel:
        records = OutboundRecords(ConversationStoreStub(channel), timeout_s=0.5)
        async with running(harness, records=records):
            rows = await harness.enqueue((recipient(18), "not yet"))
            async with asyncio.timeout(30):
                while len((await harness.store.job(harness.tenant, job_id=rows[0].id))[1]) < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

    job, history = await harness.store.job(harness.tenant, job_id=rows[0].id)
    assert {a.outcome for a in history} == {"deferred"}
    assert (job.state, job.attempts) == ("retrying", 0)
    assert await bodies_to(harness, 18) == []


async def test_new_credentials_resume_a_paused_sender_at_once(harness: Harness) -> None:
    token = ["not-the-token"]

    async def account(_: str) -> Account:
        return Account(ACCOUNT.sid, token[0])

    # Paused far longer than the test may wait: only the credentials' change can resume it.
    async with running(harness, account=account, pause_s=600.0) as runner:
        rows = await harness.enqueue((recipient(19), "with the right token"))
        async with asyncio.timeout(30):
            while not (await harness.store.job(harness.tenant, job_id=rows[0].id))[1]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        token[0] = ACCOUNT.auth_token
        runner.credentials_changed()
        await harness.until(rows, lambda s: s == "sent")

    _, history = await harness.store.job(harness.tenant, job_id=rows[0].id)
    assert [(a.outcome, a.error_code) for a in history] == [("paused", 20003), ("sent", 0)]


async def test_a_send_continues_the_trace_its_enqueue_started(harness: Harness) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    # Only the stream may bring the job (not a read of Postgres), so it brings the context.
    async with running(harness, tracer=tracer, reconcile_interval_s=60.0) as runner:
        await runner.ready.wait()
        with tracer.start_as_current_span("enqueue") as enqueue:
            rows = await harness.enqueue((recipient(20), "traced"))
        await harness.until(rows, lambda s: s == "sent")

    [send] = [span for span in exporter.get_finished_spans() if span.name == "dispatch send"]
    assert send.context is not None
    assert send.parent is not None
    assert send.context.trace_id == enqueue.get_span_context().trace_id
    assert send.parent.span_id == enqueue.get_span_context().span_id
    assert send.attributes == {"wamesh.tenant.id": harness.tenant, "wamesh.job.id": rows[0].id}


async def test_a_changed_tenant_has_its_limits_read_again(harness: Harness) -> None:
    read: list[int] = []

    async def limits(_: str) -> SenderLimits:
        read.append(len(read))
        return SenderLimits(messages_per_second=500.0, recipient_interval_s=0.0)

    async with running(harness, limits=limits) as runner:
        await harness.until(await harness.enqueue((recipient(16), "before")), lambda s: s == "sent")
        assert len(read) == 1
        runner.credentials_changed()  # what a tenants invalidation does
        await harness.until(await harness.enqueue((recipient(16), "after")), lambda s: s == "sent")
    assert len(read) == 2
