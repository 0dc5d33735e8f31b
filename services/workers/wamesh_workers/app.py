"""Wiring: settings → engine, Redis → the WorkerRegistry, its sweep and the pod watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from kubernetes.client import CoreV1Api
from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from wamesh.workers.v1 import workers_pb2, workers_pb2_grpc
from wamesh_kit.rpc.database_service import BackgroundLoop, Backing, Wiring, database_service
from wamesh_kit.rpc.server import GrpcService, Service
from wamesh_workers.announcer import Announcer
from wamesh_workers.metrics import RegistryMetrics
from wamesh_workers.pods import PodWatch, pod_api
from wamesh_workers.servicer import WorkerRegistry, now, sweeping
from wamesh_workers.settings import WorkersSettings
from wamesh_workers.store import WorkerStore, first_reap

REDIS_TIMEOUT_S = 0.5


@asynccontextmanager
async def workers_service(
    settings: WorkersSettings,
    *,
    registry: CollectorRegistry = REGISTRY,
    tracer_provider: TracerProvider | None = None,
    kubernetes_api: CoreV1Api | None = None,
) -> AsyncIterator[GrpcService]:
    """The workers gRPC server, its sweep and (``WAMESH_K8S_WATCH``) the pod watch, started;
    stopped on exit. ``kubernetes_api`` replaces the in-cluster client (tests)."""

    def wire(backing: Backing) -> Wiring:
        lease = timedelta(seconds=settings.lease_ttl_s)
        grace = timedelta(seconds=settings.restart_grace_s)
        store = WorkerStore(backing.engine, lease, reap_after=first_reap(now(), lease, grace))
        announcer = Announcer(backing.redis, route_ttl_s=settings.route_ttl_s)
        metrics = RegistryMetrics(backing.registry)
        servicer = WorkerRegistry(store, announcer, backing.redis, settings, metrics)

        async def sweep(stop: asyncio.Event) -> None:
            await sweeping(store, announcer, settings, metrics, stop)

        loops: dict[str, BackgroundLoop] = {"sweep": sweep}
        if settings.k8s_watch:

            async def pod_gone(pod_name: str, reason: str) -> None:
                worker_id = await store.active_worker_of_instance(pod_name)
                if worker_id is None:  # not one of ours, or already lost
                    return
                outcome = await store.lose(worker_id, f"its pod is {reason}", now())
                await announcer.announce(outcome.changes)
                metrics.count(outcome)

            watch = PodWatch(
                kubernetes_api or pod_api(in_cluster=True),
                settings.k8s_namespace,
                settings.k8s_worker_selector,
                pod_gone,
            )
            loops["pod-watch"] = watch.run
        return Wiring(
            [
                Service(
                    workers_pb2.DESCRIPTOR.services_by_name["WorkerRegistry"],
                    servicer,
                    workers_pb2_grpc.add_WorkerRegistryServicer_to_server,
                )
            ],
            loops,
        )

    async with database_service(
        settings,
        wire,
        client_name="workers",
        registry=registry,
        tracer_provider=tracer_provider,
        redis_socket_timeout_s=REDIS_TIMEOUT_S,
    ) as server:
        yield server
