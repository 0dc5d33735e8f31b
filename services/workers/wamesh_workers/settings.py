"""The workers service's settings, from ``WAMESH_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, model_validator

from wamesh_kit.rpc.client import MAX_RECONNECT_BACKOFF_S
from wamesh_kit.settings import DatabaseServiceSettings


class WorkersSettings(DatabaseServiceSettings):
    service_name: str = "workers"
    grpc_listen: str = "127.0.0.1:50055"
    metrics_listen: str = "127.0.0.1:9465"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/workers"
    lease_ttl_s: float = Field(default=10.0, gt=0, description="A worker silent this long is LOST")
    heartbeat_interval_s: float = Field(default=3.0, gt=0, description="What workers are told")
    sweep_interval_s: float = Field(
        default=1.0, gt=0, description="How often the leader reaps leases and places sessions"
    )
    rebalance_moves_per_sweep: int = Field(
        default=10, ge=0, description="Most sessions moved toward even load per sweep (0: never)"
    )
    route_ttl_s: int = Field(
        default=300,
        ge=1,
        description="Lifetime of a cached route, should a change's refresh be lost (a stale "
        "route only sends work to a holder that refuses it by epoch)",
    )
    restart_grace_s: float = Field(
        default=MAX_RECONNECT_BACKOFF_S + 3.0,
        ge=0,
        description="After a start, how much longer than a lease before a worker may be lost: "
        "the workers' reconnect back-off and a heartbeat",
    )
    qr_ttl_s: float = Field(default=120.0, gt=0, le=120.0)
    k8s_watch: bool = Field(default=False, description="Lose a worker as soon as its pod goes")
    k8s_namespace: str = "default"
    k8s_worker_selector: str = "wamesh.io/worker=true"

    @model_validator(mode="after")
    def _heartbeats_fit_the_lease(self) -> WorkersSettings:
        if self.heartbeat_interval_s * 2 > self.lease_ttl_s:
            raise ValueError(
                "WAMESH_HEARTBEAT_INTERVAL_S must be at most half of WAMESH_LEASE_TTL_S, "
                "so one lost heartbeat does not lose a worker"
            )
        return self
