"""With WAMESH_K8S_WATCH the registry loses a worker the moment its pod goes, long before
its lease would expire: the registry served over the real kubernetes client, watching the
stand-in API server."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.services.workers.k8s_standin import KubeStandIn, core_api
from tests.services.workers.workers_testkit import make_settings, registration, unique
from wamesh.workers.v1 import workers_pb2 as pb
from wamesh.workers.v1.workers_pb2_grpc import WorkerRegistryStub
from wamesh_kit.settings import DEV_INTERNAL_TOKEN
from wamesh_workers.announcer import Announcer
from wamesh_workers.app import workers_service
from wamesh_workers.store import Change

LABELS = {"wamesh.io/worker": "true"}


async def test_a_deleted_pod_loses_its_worker_before_the_lease_ends(
    workers_dsn: str, redis_url: str, grpc_channels: Any
) -> None:
    standin = KubeStandIn()
    # A lease far longer than the test: only the pod watch can lose the worker in time.
    settings = make_settings(
        workers_dsn,
        redis_url,
        lease_ttl_s=600,
        heartbeat_interval_s=1,
        k8s_watch=True,
        k8s_worker_selector="wamesh.io/worker=true",
    )
    async with standin.serving() as url:
        with core_api(url) as api:
            async with workers_service(
                settings, registry=CollectorRegistry(), kubernetes_api=api
            ) as server:
                internal = WorkerRegistryStub(grpc_channels(server.port, DEV_INTERNAL_TOKEN))
                kind = unique("k")
                doomed_spec = registration(kind=kind)
                survivor_spec = registration(kind=kind)
                for spec in (doomed_spec, survivor_spec):
                    standin.add_pod(spec.instance_id, LABELS)
                doomed = (await internal.RegisterWorker(doomed_spec)).worker
                survivor = (await internal.RegisterWorker(survivor_spec)).worker
                standin.add_pod("not-a-worker", {"app": "other"})
                session = (
                    await internal.AssignSession(
                        pb.AssignSessionRequest(
                            session_id=unique("s"), tenant_id="t", kind=kind, worker_id=doomed.id
                        )
                    )
                ).session

                standin.delete_pod(doomed_spec.instance_id)
                standin.delete_pod("not-a-worker")

                async with asyncio.timeout(30):
                    while True:
                        route = await internal.RouteSession(
                            pb.RouteSessionRequest(session_id=session.id)
                        )
                        if route.worker_id == survivor.id:
                            break
                        await asyncio.sleep(0.05)
                listed = await internal.ListWorkers(pb.ListWorkersRequest(kind=kind))

    states = {w.id: w.state for w in listed.workers}
    assert states == {doomed.id: pb.WORKER_STATE_LOST, survivor.id: pb.WORKER_STATE_ACTIVE}
    assert route.epoch == session.epoch + 1


async def test_stopping_while_a_lost_worker_is_announced_returns(
    workers_dsn: str, redis_url: str, grpc_channels: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the pod watch's handler writes a loss's moves to Redis: the service
    still stops, though the write swallowed the cancel that stops the handler."""
    announcing = asyncio.Event()
    real_announce = Announcer.announce

    async def announce_swallowing_the_cancel(self: Announcer, changes: list[Change]) -> None:
        if not any(change.action == "revoked" for change in changes):
            await real_announce(self, changes)
            return
        announcing.set()
        # What redis-py's write does on Python 3.11 when the cancel lands as the write
        # completes (it sends through asyncio.wait_for, which then returns instead of
        # raising), here every time rather than by chance.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await real_announce(self, changes)

    monkeypatch.setattr(Announcer, "announce", announce_swallowing_the_cancel)
    standin = KubeStandIn()
    settings = make_settings(
        workers_dsn,
        redis_url,
        lease_ttl_s=600,
        heartbeat_interval_s=1,
        k8s_watch=True,
        k8s_worker_selector="wamesh.io/worker=true",
    )
    async with standin.serving() as url:
        with core_api(url) as api:
            service = workers_service(settings, registry=CollectorRegistry(), kubernetes_api=api)
            server = await service.__aenter__()
            try:
                internal = WorkerRegistryStub(grpc_channels(server.port, DEV_INTERNAL_TOKEN))
                spec = registration(kind=unique("k"))
                standin.add_pod(spec.instance_id, LABELS)
                worker = (await internal.RegisterWorker(spec)).worker
                await internal.AssignSession(
                    pb.AssignSessionRequest(
                        session_id=unique("s"), tenant_id="t", kind=spec.kind, worker_id=worker.id
                    )
                )
                standin.delete_pod(spec.instance_id)
                async with asyncio.timeout(30):
                    await announcing.wait()
            finally:
                # A hang detector, not a timing: stopping takes well under a second.
                async with asyncio.timeout(20):
                    await service.__aexit__(None, None, None)
    assert not [t for t in threading.enumerate() if t.name == "wamesh-pod-watch"]
