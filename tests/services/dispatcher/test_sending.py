"""Dispatcher replicas as session workers of the real workers registry: a replica sends for
the senders placed on it, and when the registry moves a sender to another replica mid-load,
every job is still sent exactly once and each recipient's in enqueue order."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from tests.services.dispatcher.runner_testkit import (
    Harness,
    bodies_to,
    engine,
    harness,
    recipient,
    redis,
    registry,
    registry_dsn,
    runner_dsn,
)
from wamesh.workers.v1 import workers_pb2 as workers_pb
from wamesh.workers.v1.workers_pb2_grpc import WorkerRegistryStub
from wamesh_dispatcher.bell import session_id
from wamesh_dispatcher.sending import Sending
from wamesh_dispatcher.settings import DispatcherSettings
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_INTERNAL_TOKEN

__all__ = ["engine", "harness", "redis", "registry", "registry_dsn", "runner_dsn"]


@contextlib.asynccontextmanager
async def replica(registry: GrpcService, harness: Harness) -> AsyncIterator[Sending]:
    settings = DispatcherSettings(
        workers_target=f"127.0.0.1:{registry.port}",
        instance_id="dispatcher-" + uuid.uuid4().hex[:8],
        worker_capacity=10,
        database_url="postgresql://unused/unused",
    )
    sending = Sending(settings, lambda holds: harness.deps(holds=holds))
    stop = asyncio.Event()
    task = asyncio.create_task(sending.run(stop))
    await sending.worker.started()
    try:
        yield sending
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_sender_moved_between_replicas_mid_load_sends_each_job_once_in_order(
    registry: GrpcService, harness: Harness, grpc_channels: Callable[[int, str | None], Any]
) -> None:
    stub: Any = WorkerRegistryStub(grpc_channels(registry.port, DEV_INTERNAL_TOKEN))
    session = session_id(harness.tenant, harness.sender)
    async with replica(registry, harness) as first, replica(registry, harness) as second:
        await stub.AssignSession(
            workers_pb.AssignSessionRequest(
                session_id=session,
                tenant_id=harness.tenant,
                kind="twilio",
                worker_id=first.worker.worker_id,
            )
        )
        waves = []
        for wave in range(6):
            waves += await harness.enqueue(*[(recipient(r), f"w{wave}-r{r}") for r in range(5)])
            if wave == 2:  # mid-load: the registry hands the sender to the other replica
                await stub.AssignSession(
                    workers_pb.AssignSessionRequest(
                        session_id=session,
                        tenant_id=harness.tenant,
                        kind="twilio",
                        worker_id=second.worker.worker_id,
                    )
                )
            await asyncio.sleep(0.1)
        await harness.until(waves, lambda state: state == "sent")
        holder = await stub.RouteSession(workers_pb.RouteSessionRequest(session_id=session))

    assert holder.worker_id == second.worker.worker_id
    for r in range(5):
        assert await bodies_to(harness, r) == [f"w{wave}-r{r}" for wave in range(6)]
    for row in waves:
        _, history = await harness.store.job(harness.tenant, job_id=row.id)
        # A send the move caught before its create is deferred, not made: one "sent" each.
        assert [a.outcome for a in history if a.outcome != "deferred"] == ["sent"]
