"""Rows to protobuf messages."""

from __future__ import annotations

from typing import Any

from wamesh.workers.v1 import workers_pb2 as pb
from wamesh_kit.timestamps import optional_timestamp as timestamp
from wamesh_workers.store import SessionRow, WorkerRow

WORKER_STATES = {
    "active": pb.WORKER_STATE_ACTIVE,
    "lost": pb.WORKER_STATE_LOST,
    "gone": pb.WORKER_STATE_GONE,
    "draining": pb.WORKER_STATE_DRAINING,
}
STATE_NAMES = {value: name for name, value in WORKER_STATES.items()}
EVENT_KINDS = {
    "worker_registered": pb.WORKER_EVENT_KIND_WORKER_REGISTERED,
    "worker_deregistered": pb.WORKER_EVENT_KIND_WORKER_DEREGISTERED,
    "worker_lost": pb.WORKER_EVENT_KIND_WORKER_LOST,
    "session_assigned": pb.WORKER_EVENT_KIND_SESSION_ASSIGNED,
    "session_revoked": pb.WORKER_EVENT_KIND_SESSION_REVOKED,
    "qr_code_put": pb.WORKER_EVENT_KIND_QR_CODE_PUT,
    "worker_drained": pb.WORKER_EVENT_KIND_WORKER_DRAINED,
    "session_status": pb.WORKER_EVENT_KIND_SESSION_STATUS,
}
SESSION_STATES = {
    "pending": pb.SESSION_STATE_PENDING,
    "assigned": pb.SESSION_STATE_ASSIGNED,
    "moving": pb.SESSION_STATE_MOVING,
}
SESSION_STATUSES = {
    "qr_required": pb.SESSION_STATUS_QR_REQUIRED,
    "connecting": pb.SESSION_STATUS_CONNECTING,
    "connected": pb.SESSION_STATUS_CONNECTED,
    "disconnected": pb.SESSION_STATUS_DISCONNECTED,
    "logged_out": pb.SESSION_STATUS_LOGGED_OUT,
}
STATUS_NAMES = {value: name for name, value in SESSION_STATUSES.items()}


def worker_message(worker: WorkerRow) -> pb.Worker:
    return pb.Worker(
        id=worker.id,
        kind=worker.kind,
        endpoint=worker.endpoint,
        capacity=worker.capacity,
        labels=worker.labels,
        state=WORKER_STATES[worker.state],
        session_count=worker.session_count,
        load=worker.load,
        instance_id=worker.instance_id,
        registered_at=timestamp(worker.registered_at),
        last_heartbeat_at=timestamp(worker.last_heartbeat_at),
        lease_expires_at=timestamp(worker.lease_expires_at),
    )


def session_message(session: SessionRow) -> pb.Session:
    return pb.Session(
        id=session.id,
        tenant_id=session.tenant_id,
        kind=session.kind,
        required_labels=session.required_labels,
        state=SESSION_STATES[session.state],
        worker_id=session.worker_id or "",
        epoch=session.epoch,
        assigned_at=timestamp(session.assigned_at),
        status=SESSION_STATUSES.get(session.status, pb.SESSION_STATUS_UNSPECIFIED),
        status_at=timestamp(session.status_at),
        moving_to=session.moving_to or "",
    )


def event_message(row: dict[str, Any]) -> pb.WorkerEvent:
    return pb.WorkerEvent(
        id=str(row["id"]),
        kind=EVENT_KINDS[row["kind"]],
        worker_id=row["worker_id"],
        session_id=row["session_id"],
        tenant_id=row["tenant_id"],
        epoch=row["epoch"],
        detail=row["detail"],
        occurred_at=timestamp(row["occurred_at"]),
    )
