"""Failures Twilio reports after it accepted a message (a status callback: 63016 outside the
24-hour window, 63018 the sender's rate, 21610 the recipient opted out, an undelivered
message), which the conversation store publishes on the ``statuses`` stream: each settles
its job as the one error table says, as if the create itself had failed that way (21610
also opts the recipient out in the conversation store).

Every replica consumes the stream in one consumer group, so each event is handled once; a
repeated event finds its job no longer SENT with that SID and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from wamesh.conversations.v1 import conversations_pb2
from wamesh.events.v1 import events_pb2
from wamesh_dispatcher import bell
from wamesh_dispatcher.backoff import Backoff
from wamesh_dispatcher.outcomes import OPTED_OUT, Action, Failure, classify
from wamesh_dispatcher.records import OutboundRecords
from wamesh_dispatcher.store import Finish, JobStore
from wamesh_kit.keys import stream_key
from wamesh_kit.streams import StreamConsumer, StreamEntry

log = logging.getLogger(__name__)

STATUSES_STREAM = stream_key("statuses")
GROUP = "dispatcher"
# An idle read's wait: below the socket timeout of the dispatcher's Redis client
# (app.REDIS_TIMEOUT_S), which would otherwise end every idle read as a lost Redis.
READ_BLOCK_MS = 250
FAILED = (conversations_pb2.MESSAGE_STATUS_FAILED, conversations_pb2.MESSAGE_STATUS_UNDELIVERED)


class LateFailures:
    def __init__(
        self,
        store: JobStore,
        redis: aioredis.Redis,
        backoff: Backoff,
        records: OutboundRecords | None = None,
    ) -> None:
        self._store = store
        self._redis = redis
        self._backoff = backoff
        self._records = records

    def consumer(self, name: str) -> StreamConsumer[events_pb2.MessageStatusEvent]:
        return StreamConsumer(
            self._redis,
            STATUSES_STREAM,
            group=GROUP,
            consumer=name,
            message_type=events_pb2.MessageStatusEvent,
            handler=self.handle,
            block_ms=READ_BLOCK_MS,
        )

    async def handle(self, entry: StreamEntry[events_pb2.MessageStatusEvent]) -> None:
        event = entry.message
        if event.status not in FAILED or not event.idempotency_key:
            return
        now = datetime.now(UTC)
        finish = self._finish(event, now)
        job = await self._store.late_failure(
            event.tenant_id, event.idempotency_key, event.provider_sid, finish, now
        )
        if job is None:
            return
        log.info("job %s failed after acceptance (%d): %s", job.id, event.error_code, job.state)
        if event.error_code == OPTED_OUT and self._records is not None:
            await self._records.opt_out(job)
        if job.state in ("queued", "retrying"):
            await bell.ring(self._redis, job.tenant_id, job.sender_number, [job.id])

    def _finish(self, event: events_pb2.MessageStatusEvent, now: datetime) -> Finish:
        outcome = classify(
            Failure(event.error_message, status=None, code=event.error_code or None),
            creating=False,
        )
        message = f"{outcome.reason}: {event.error_message}".strip(": ")
        code = event.error_code
        if outcome.action is Action.WINDOW_CLOSED:
            # Queued again as its fallback template if it has one; the store leaves a job
            # without one failed.
            return Finish("window_closed", "queued", now, code, message, use_fallback=True)
        if outcome.action is Action.RETRY:
            wait = timedelta(seconds=self._backoff.delay(1))
            return Finish("late_retry", "retrying", now, code, message, next_attempt_at=now + wait)
        return Finish("late_failure", "failed", now, code, message)
