"""Settings and small helpers for the workers service's tests."""

from __future__ import annotations

import uuid
from typing import Any

from wamesh.workers.v1 import workers_pb2 as pb
from wamesh_workers.settings import WorkersSettings


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> WorkersSettings:
    values: dict[str, Any] = {
        "grpc_listen": "127.0.0.1:0",
        "metrics_listen": "",
        "database_url": database_url,
        "redis_url": redis_url,
        "shutdown_grace_s": 0,
        "lease_ttl_s": 2.0,
        "heartbeat_interval_s": 0.5,
        "sweep_interval_s": 0.1,
        # Tests lose workers on purpose soon after the registry starts.
        "restart_grace_s": 0.0,
        **overrides,
    }
    return WorkersSettings(**values)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def registration(
    kind: str = "twilio", capacity: int = 10, **labels: str
) -> pb.RegisterWorkerRequest:
    name = unique("pod")
    return pb.RegisterWorkerRequest(
        instance_id=name, kind=kind, endpoint=f"{name}:50060", capacity=capacity, labels=labels
    )


def session_request(
    kind: str = "twilio", tenant_id: str = "t-1", **fields: Any
) -> pb.AssignSessionRequest:
    return pb.AssignSessionRequest(
        session_id=unique(f"{kind}:{tenant_id}"), tenant_id=tenant_id, kind=kind, **fields
    )
