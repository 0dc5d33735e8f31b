"""Rows to protobuf messages."""

from __future__ import annotations

from collections.abc import Sequence

from wamesh.common.v1 import content_pb2
from wamesh.dispatch.v1 import dispatch_pb2 as pb
from wamesh_dispatcher.store import AttemptRow, JobRow, SenderStats, Template
from wamesh_kit.timestamps import optional_timestamp as timestamp

JOB_STATES = {
    "queued": pb.JOB_STATE_QUEUED,
    "sending": pb.JOB_STATE_SENDING,
    "sent": pb.JOB_STATE_SENT,
    "retrying": pb.JOB_STATE_RETRYING,
    "failed": pb.JOB_STATE_FAILED,
    "dead": pb.JOB_STATE_DEAD,
}
PRIORITIES = {"interactive": pb.PRIORITY_INTERACTIVE, "bulk": pb.PRIORITY_BULK}


def template_message(template: Template | None) -> content_pb2.ContentTemplate | None:
    if template is None:
        return None
    return content_pb2.ContentTemplate(
        content_sid=template.content_sid, variables=template.variables
    )


def attempt_message(attempt: AttemptRow) -> pb.Attempt:
    return pb.Attempt(
        number=attempt.number,
        started_at=timestamp(attempt.started_at),
        finished_at=timestamp(attempt.finished_at),
        outcome=attempt.outcome,
        error_code=attempt.error_code,
        error_message=attempt.error_message,
        provider_sid=attempt.provider_sid or "",
    )


def job_message(job: JobRow, history: Sequence[AttemptRow] = ()) -> pb.Job:
    return pb.Job(
        id=job.id,
        tenant_id=job.tenant_id,
        idempotency_key=job.idempotency_key,
        sender_number=job.sender_number,
        recipient_number=job.recipient_number,
        body=job.body,
        media=[content_pb2.Media(url=url, content_type=kind) for url, kind in job.media],
        template=template_message(job.template),
        state=JOB_STATES[job.state],
        attempts=job.attempts,
        last_error_code=job.last_error_code,
        last_error_message=job.last_error_message,
        provider_sid=job.provider_sid or "",
        next_attempt_at=timestamp(job.next_attempt_at),
        created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at),
        sent_at=timestamp(job.sent_at),
        dead_at=timestamp(job.dead_at),
        priority=PRIORITIES[job.priority],
        not_before=timestamp(job.not_before),
        fallback_template=template_message(job.fallback_template),
        attempt_history=[attempt_message(a) for a in history],
    )


def stats_message(stats: SenderStats) -> pb.SenderQueueStats:
    counts = stats.counts
    return pb.SenderQueueStats(
        tenant_id=stats.tenant_id,
        sender_number=stats.sender_number,
        pending=counts.get("queued", 0),
        in_flight=counts.get("sending", 0),
        retrying=counts.get("retrying", 0),
        dead=counts.get("dead", 0),
        sent=counts.get("sent", 0),
        failed=counts.get("failed", 0),
        oldest_pending_at=timestamp(stats.oldest_pending_at),
    )
