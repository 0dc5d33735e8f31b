"""The workers registry: how fast a dead worker's sessions move, and RouteSession's speed.

    .venv/bin/python tools/bench/workers.py [--sessions 10000] [--workers 5]
        [--lease-ttl 5] [--pod-lease-ttl 60 | --no-pod-watch] [--concurrency 32]
        [--profile flame.svg]

Starts real PostgreSQL and Redis, ``wamesh serve workers`` and ``wamesh serve tenants`` as
their own processes, registers ``--workers`` workers that heartbeat from their own child
processes, and assigns ``--sessions`` sessions. Then, in one run:

- failover: SIGKILL one worker's process; the time until none of its sessions is left on it
  and none waits, counted from the kill and from its lease's expiry (what the registry can
  know);
- routes: RouteSession for every session (warm: answered from Redis) beside ResolveNumber
  for as many tenants (warm), alternating, same concurrency;
- pod_watch: a second registry, on a fresh database, with ``WAMESH_K8S_WATCH=true`` and a
  long lease (``--pod-lease-ttl``, so only the pod watch can explain a fast move), watching
  the pods of ``--workers`` new workers (same ``--sessions``) on a stand-in Kubernetes API
  server; SIGKILL one worker's process and delete its pod: the time from the pod's deletion
  until none of its sessions is left on it and it is LOST.

The pod-watch phase borrows the stand-in API server of the tests
(``tests/services/workers/k8s_standin.py``, real list/watch over HTTP), served from this
process; the registry runs as a process of its own, started as ``workers.py
--serve-registry URL``: ``wamesh serve workers``'s own main (``run_grpc_service`` over
``workers_service``, configured from the same ``WAMESH_*`` variables) with one difference,
its ``kubernetes`` client pointed at the stand-in. ``wamesh serve workers`` itself cannot be
pointed there: it only loads the in-cluster config (https, and a service-account token and
CA read from fixed paths under /var/run/secrets).

A benchmark, not a test: it prints figures and asserts only that answers are right.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from asyncio.subprocess import Process
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchkit import serve, start
from resolve_number import number_of, seed

from wamesh.tenants.v1 import tenants_pb2, tenants_pb2_grpc
from wamesh.workers.v1 import workers_pb2 as pb
from wamesh.workers.v1 import workers_pb2_grpc
from wamesh_kit.localinfra import LocalInfra, free_port
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.redis_client import make_redis
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.main import run_grpc_service
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN
from wamesh_workers.announcer import raw_reply, route_key
from wamesh_workers.app import workers_service
from wamesh_workers.settings import WorkersSettings

# The pod-watch phase imports the stand-in API server from the tests (see the docstring).
REPO = Path(__file__).resolve().parents[2]
POD_LABELS = {"wamesh.io/worker": "true"}


async def worker_process(target: str, name: str, capacity: int, every_s: float) -> None:
    """A worker that registers, prints its id, and then only proves it lives."""
    async with make_channel(target, token=DEV_INTERNAL_TOKEN) as channel:
        stub: Any = workers_pb2_grpc.WorkerRegistryStub(channel)
        registered = await stub.RegisterWorker(
            pb.RegisterWorkerRequest(
                instance_id=name, kind="twilio", endpoint=f"{name}:1", capacity=capacity
            )
        )
        print(registered.worker.id, flush=True)
        while True:
            await stub.Heartbeat(pb.HeartbeatRequest(worker_id=registered.worker.id, load=0.5))
            await asyncio.sleep(every_s)


async def calls_per_s(call: Any, requests: list[Any], concurrency: int) -> dict[str, float]:
    queue = iter(requests)
    latencies: list[float] = []

    async def caller() -> None:
        for request in queue:
            started = time.perf_counter()
            await call(request)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "calls": len(latencies),
        "calls_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


async def setup(
    stub: Any,
    args: argparse.Namespace,
    target: str,
    *,
    lease_ttl: float,
    names: list[str],
    session_ids: list[str],
) -> tuple[list[pb.Worker], list[Process]]:
    """One worker process per name, heartbeating, then every session assigned."""
    capacity = args.sessions  # any worker could take them all: placement is by free capacity
    beating = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            name,
            "--target",
            target,
            "--capacity",
            str(capacity),
            "--every",
            str(lease_ttl / 5),
            stdout=asyncio.subprocess.PIPE,
        )
        for name in names
    ]
    ids = [await child.stdout.readline() for child in beating if child.stdout]
    listed = await stub.ListWorkers(pb.ListWorkersRequest(kind="twilio"))
    by_id = {w.id: w for w in listed.workers}
    workers = [by_id[raw.decode().strip()] for raw in ids]
    await calls_per_s(
        stub.AssignSession,
        [
            pb.AssignSessionRequest(session_id=s, tenant_id=s.split(":")[1], kind="twilio")
            for s in session_ids
        ],
        16,
    )
    return workers, beating


async def until_moved(stub: Any, worker_id: str) -> tuple[Any, datetime]:
    """Polls until ``worker_id`` holds no session and is LOST; the last ListWorkers answer
    and when that was seen."""
    while True:
        listed = await stub.ListWorkers(pb.ListWorkersRequest(kind="twilio"))
        state = {w.id: w.state for w in listed.workers}
        left = (
            await stub.ListSessions(pb.ListSessionsRequest(worker_id=worker_id, page_size=1))
        ).sessions
        if not left and state[worker_id] == pb.WORKER_STATE_LOST:
            return listed, datetime.now(UTC)
        await asyncio.sleep(0.02)


async def lease_of(stub: Any, worker_id: str) -> datetime:
    listed = await stub.ListWorkers(pb.ListWorkersRequest(kind="twilio"))
    worker = next(w for w in listed.workers if w.id == worker_id)
    expires: datetime = worker.lease_expires_at.ToDatetime(UTC)
    return expires


async def failover(stub: Any, workers: list[pb.Worker], beating: list[Process]) -> dict[str, Any]:
    victim_index = 0
    victim = workers[victim_index]
    held = (
        await stub.ListSessions(pb.ListSessionsRequest(worker_id=victim.id, page_size=1))
    ).sessions
    before = await stub.ListWorkers(pb.ListWorkersRequest(kind="twilio"))
    counts = {w.id: w.session_count for w in before.workers}
    beating[victim_index].send_signal(signal.SIGKILL)
    killed_at = datetime.now(UTC)
    killed = time.perf_counter()
    await beating[victim_index].wait()
    # The lease the registry granted at the victim's last heartbeat.
    lease_expires = await lease_of(stub, victim.id)
    listed, moved_at = await until_moved(stub, victim.id)
    total = time.perf_counter() - killed
    return {
        "sessions_on_the_killed_worker": counts[victim.id],
        "had_sessions": bool(held),
        "seconds_from_kill": round(total, 2),
        "seconds_after_lease_expired": round((moved_at - lease_expires).total_seconds(), 2),
        "lease_left_at_kill_s": round((lease_expires - killed_at).total_seconds(), 2),
        "after": {w.id: w.session_count for w in listed.workers},
    }


async def routes(
    workers_stub: Any, tenants_stub: Any, session_ids: list[str], tenants: int, concurrency: int
) -> dict[str, Any]:
    sample = random.sample(session_ids, min(len(session_ids), 5000))
    route_requests = [pb.RouteSessionRequest(session_id=s) for s in sample]
    numbers = [
        tenants_pb2.ResolveNumberRequest(number=number_of(i % tenants)) for i in range(len(sample))
    ]
    await calls_per_s(workers_stub.RouteSession, route_requests, concurrency)  # warm
    await calls_per_s(tenants_stub.ResolveNumber, numbers, concurrency)  # warm
    runs: dict[str, list[dict[str, float]]] = {"RouteSession": [], "ResolveNumber": []}
    for _ in range(2):
        runs["RouteSession"].append(
            await calls_per_s(workers_stub.RouteSession, route_requests, concurrency)
        )
        runs["ResolveNumber"].append(
            await calls_per_s(tenants_stub.ResolveNumber, numbers, concurrency)
        )
    return runs


async def measure(args: argparse.Namespace, workers_port: int, tenants_port: int) -> dict[str, Any]:
    target = f"127.0.0.1:{workers_port}"
    async with (
        make_channel(target, token=DEV_ADMIN_TOKEN) as admin_channel,
        make_channel(target, token=DEV_INTERNAL_TOKEN) as channel,
        make_channel(f"127.0.0.1:{tenants_port}", token=DEV_INTERNAL_TOKEN) as tenants_channel,
    ):
        await asyncio.wait_for(channel.channel_ready(), 60)
        await asyncio.wait_for(tenants_channel.channel_ready(), 60)
        stub: Any = workers_pb2_grpc.WorkerRegistryStub(channel)
        admin: Any = workers_pb2_grpc.WorkerRegistryStub(admin_channel)
        tenants_stub: Any = tenants_pb2_grpc.TenantRegistryStub(tenants_channel)
        started = time.perf_counter()
        names = [f"bench-{i}" for i in range(args.workers)]
        session_ids = [f"twilio:bench-{i % args.tenants:05d}:{i}" for i in range(args.sessions)]
        workers, beating = await setup(
            stub, args, target, lease_ttl=args.lease_ttl, names=names, session_ids=session_ids
        )
        assigned_s = time.perf_counter() - started
        try:
            moved = await failover(admin, workers, beating)
            route = await routes(stub, tenants_stub, session_ids, args.tenants, args.concurrency)
        finally:
            for child in beating:
                if child.returncode is None:
                    child.kill()
                await child.wait()
    return {
        "sessions": args.sessions,
        "workers": args.workers,
        "lease_ttl_s": args.lease_ttl,
        "assign_all_seconds": round(assigned_s, 1),
        "failover": moved,
        "warm_routes_concurrency": args.concurrency,
        "warm_routes": route,
    }


async def sessions_of(stub: Any, worker_id: str) -> list[str]:
    ids: list[str] = []
    token = ""
    while True:
        page = await stub.ListSessions(
            pb.ListSessionsRequest(worker_id=worker_id, page_size=500, page_token=token)
        )
        ids += [session.id for session in page.sessions]
        token = page.next_page_token
        if not token:
            return ids


async def until_routed(
    redis_url: str, session_ids: list[str], worker_id: str, timeout_s: float
) -> datetime | None:
    """When every route cached in Redis (what RouteSession answers) for ``session_ids`` names
    a worker other than ``worker_id``; None if that takes over ``timeout_s``."""
    redis = make_redis(redis_url)
    keys = [route_key(session_id) for session_id in session_ids]
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                routes = await redis.mget(keys)
                if all(
                    raw is not None
                    and pb.RouteSessionResponse.FromString(raw_reply(raw)).worker_id != worker_id
                    for raw in routes
                ):
                    return datetime.now(UTC)
                await asyncio.sleep(0.05)
    except TimeoutError:
        return None
    finally:
        await redis.aclose()


def registry_env(database_url: str, redis_url: str, port: int, lease_ttl: float) -> dict[str, str]:
    return {
        "WAMESH_REDIS_URL": redis_url,
        "WAMESH_METRICS_LISTEN": "",
        "WAMESH_DATABASE_URL": database_url,
        "WAMESH_GRPC_LISTEN": f"127.0.0.1:{port}",
        "WAMESH_LEASE_TTL_S": str(lease_ttl),
        "WAMESH_HEARTBEAT_INTERVAL_S": str(lease_ttl / 5),
        "WAMESH_SWEEP_INTERVAL_S": "0.2",
        "WAMESH_REBALANCE_MOVES_PER_SWEEP": "0",
    }


def serve_registry(api_url: str) -> None:
    """``wamesh serve workers``, its pod watch on the Kubernetes API at ``api_url``."""
    from tests.services.workers.k8s_standin import core_api

    with core_api(api_url) as api:

        def service(settings: WorkersSettings) -> AbstractAsyncContextManager[GrpcService]:
            return workers_service(settings, kubernetes_api=api)

        run_grpc_service(WorkersSettings(), service)


async def pod_watch(args: argparse.Namespace, database_url: str, redis_url: str) -> dict[str, Any]:
    """The registry as its own process, watching the pods of the stand-in served here."""
    from tests.services.workers.k8s_standin import KubeStandIn

    standin = KubeStandIn()
    names = [f"pod-bench-{i}" for i in range(args.workers)]
    for name in names:  # before the registry starts: its first list sees them
        standin.add_pod(name, POD_LABELS)
    port = free_port()
    target = f"127.0.0.1:{port}"
    async with standin.serving() as api_url:
        env = {
            **registry_env(database_url, redis_url, port, args.pod_lease_ttl),
            "WAMESH_K8S_WATCH": "true",
            "WAMESH_K8S_NAMESPACE": "default",
            "WAMESH_K8S_WORKER_SELECTOR": ",".join(f"{k}={v}" for k, v in POD_LABELS.items()),
        }
        registry = start([sys.executable, __file__, "--serve-registry", api_url], env)
        beating: list[Process] = []
        stopped_on_sigterm = True
        try:
            async with (
                make_channel(target, token=DEV_ADMIN_TOKEN) as admin_channel,
                make_channel(target, token=DEV_INTERNAL_TOKEN) as channel,
            ):
                await asyncio.wait_for(channel.channel_ready(), 60)
                stub: Any = workers_pb2_grpc.WorkerRegistryStub(channel)
                admin: Any = workers_pb2_grpc.WorkerRegistryStub(admin_channel)
                # Ids of their own, apart from the first phase's routes left in Redis.
                session_ids = [
                    f"twilio:bench-{i % args.tenants:05d}:pod-{i}" for i in range(args.sessions)
                ]
                workers, beating = await setup(
                    stub,
                    args,
                    target,
                    lease_ttl=args.pod_lease_ttl,
                    names=names,
                    session_ids=session_ids,
                )
                victim = workers[0]
                held = await sessions_of(admin, victim.id)
                beating[0].send_signal(signal.SIGKILL)
                await beating[0].wait()
                lease_expires = await lease_of(admin, victim.id)
                # The stand-in shares this loop: the registry's watch hears of it from here on.
                standin.delete_pod(names[0])
                deleted_at = datetime.now(UTC)
                deleted = time.perf_counter()
                listed, _ = await until_moved(admin, victim.id)
                total = time.perf_counter() - deleted
                # The registry announces the moves to Redis after it commits them.
                routed_at = await until_routed(redis_url, held, victim.id, 60)
        finally:
            for child in beating:
                if child.returncode is None:
                    child.kill()
                await child.wait()
            registry.send_signal(signal.SIGTERM)
            # Off the loop: the stand-in keeps serving while the registry stops.
            try:
                await asyncio.to_thread(registry.wait, 30)
            except subprocess.TimeoutExpired:
                stopped_on_sigterm = False
                registry.kill()
                await asyncio.to_thread(registry.wait)
    return {
        "lease_ttl_s": args.pod_lease_ttl,
        "sessions_on_the_deleted_pods_worker": len(held),
        "seconds_from_pod_deletion": round(total, 2),
        "routes_moved_seconds_from_pod_deletion": (
            None if routed_at is None else round((routed_at - deleted_at).total_seconds(), 2)
        ),
        "lease_left_at_deletion_s": round((lease_expires - deleted_at).total_seconds(), 2),
        "after": {w.id: w.session_count for w in listed.workers},
        "registry_stopped_on_sigterm": stopped_on_sigterm,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    parser.add_argument(
        "--pod-lease-ttl", type=float, default=60.0, help="the lease in the pod-watch phase"
    )
    parser.add_argument("--no-pod-watch", action="store_true", help="skip the pod-watch phase")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--profile", metavar="SVG", help="record the workers service with py-spy")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--capacity", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    parser.add_argument("--every", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--serve-registry", metavar="API_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_process(args.target, args.worker, args.capacity, args.every))
        return
    if str(REPO) not in sys.path:  # for tests.services.workers.k8s_standin
        sys.path.append(str(REPO))
    if args.serve_registry:
        serve_registry(args.serve_registry)
        return

    with (
        tempfile.TemporaryDirectory(prefix="wamesh-bench-") as data_dir,
        LocalInfra(Path(data_dir), durable=False) as infra,
    ):
        for name in ("workers", "tenants"):
            history = next(h for h in service_histories() if h.name == name)
            upgrade_database(infra.postgres.dsn(name), history)
        asyncio.run(seed(infra.postgres.dsn("tenants"), args.tenants))
        workers_port, tenants_port = free_port(), free_port()
        common = {"WAMESH_REDIS_URL": infra.redis.url, "WAMESH_METRICS_LISTEN": ""}
        services = [
            serve(
                "workers",
                registry_env(
                    infra.postgres.dsn("workers"), infra.redis.url, workers_port, args.lease_ttl
                ),
                args.profile,
            ),
            serve(
                "tenants",
                {
                    **common,
                    "WAMESH_DATABASE_URL": infra.postgres.dsn("tenants"),
                    "WAMESH_GRPC_LISTEN": f"127.0.0.1:{tenants_port}",
                },
            ),
        ]
        try:
            result = asyncio.run(measure(args, workers_port, tenants_port))
        finally:
            for service in services:
                service.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
                service.wait(timeout=60)
        if not args.no_pod_watch:
            database = "workers_pod_watch"
            infra.postgres.create_database(database)
            history = next(h for h in service_histories() if h.name == "workers")
            upgrade_database(infra.postgres.dsn(database), history)
            result["pod_watch"] = asyncio.run(
                pod_watch(args, infra.postgres.dsn(database), infra.redis.url)
            )
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
