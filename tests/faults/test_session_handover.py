"""The registry's safety proof: no two workers ever act for one session at once.

Three workers hold 200 sessions, each a separate process embedding the worker SDK and acting
for everything it holds ten times a second. Then, one after another while they act: one
worker is SIGKILLed, a fourth joins (sessions are handed over to it), the registry itself is
SIGKILLed and restarted, and a worker is frozen (SIGSTOP) for longer than its lease and then
thawed. Each worker journals every assignment, revocation and act with its epoch and time.
Read together, the journals must show, for every session, one worker per epoch and epochs
that never go back in time (an old holder acting after a newer one started would); and in the
end every session is held by a live worker that acts for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tools.faults.mesh import Service
from wamesh.workers.v1 import workers_pb2 as pb
from wamesh.workers.v1 import workers_pb2_grpc
from wamesh_kit.localinfra import LocalInfra, free_port
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_INTERNAL_TOKEN

REPO_ROOT = Path(__file__).resolve().parents[2]
SESSIONS = 200
CAPACITY = 100  # two survivors can hold every session between faults
LEASE_TTL_S = 2.0


@dataclass
class WorkerProcess:
    name: str
    journal: Path
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Cluster:
    data_dir: Path
    registry: Service
    target: str
    workers: dict[str, WorkerProcess]
    passed: bool = False

    def start_worker(self, name: str) -> WorkerProcess:
        journal = self.data_dir / f"{name}.jsonl"
        with (self.data_dir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tools.faults.session_worker",
                    "--target",
                    self.target,
                    "--name",
                    name,
                    "--log",
                    str(journal),
                    "--capacity",
                    str(CAPACITY),
                ],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.workers[name] = WorkerProcess(name, journal, process)
        return self.workers[name]

    def stop(self) -> None:
        for worker in self.workers.values():
            if worker.alive:
                worker.process.send_signal(signal.SIGCONT)
                worker.process.kill()
                worker.process.wait()
        self.registry.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    data_dir = REPO_ROOT / ".wamesh" / "faults" / uuid.uuid4().hex[:12]
    infra = LocalInfra(data_dir, durable=False)
    infra.start()
    running: Cluster | None = None
    try:
        histories = {history.name: history for history in service_histories()}
        upgrade_database(infra.postgres.dsn("workers"), histories["workers"])
        port = free_port()
        registry = Service(
            "workers",
            {
                "WAMESH_GRPC_LISTEN": f"127.0.0.1:{port}",
                "WAMESH_DATABASE_URL": infra.postgres.dsn("workers"),
                "WAMESH_REDIS_URL": infra.redis.url,
                "WAMESH_METRICS_LISTEN": "",
                "WAMESH_SHUTDOWN_GRACE_S": "1",
                "WAMESH_LEASE_TTL_S": str(LEASE_TTL_S),
                "WAMESH_HEARTBEAT_INTERVAL_S": "0.5",
                "WAMESH_SWEEP_INTERVAL_S": "0.2",
                "WAMESH_REBALANCE_MOVES_PER_SWEEP": "10",
            },
            data_dir / "registry.log",
        )
        registry.start()
        running = Cluster(data_dir, registry, f"127.0.0.1:{port}", {})
        try:
            yield running
        finally:
            running.stop()
    finally:
        infra.postgres.stop()
        infra.redis.stop()
        if running is not None and running.passed:  # else kept: the logs and journals say why
            shutil.rmtree(data_dir, ignore_errors=True)


# The placement ``settled`` saw last, for the message of a wait that never ends.
LAST_SEEN: list[str] = []


async def eventually(check: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while True:
        try:
            found = await check()
        except Exception as error:  # the registry may be restarting
            found, last = None, error
        else:
            last = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what} (last error: {last!r}; seen: {LAST_SEEN})")
        await asyncio.sleep(0.2)


async def active_ids(stub: Any, instances: set[str]) -> dict[str, str] | None:
    """The active worker id of each of ``instances`` (a process keeps its instance id when it
    registers again), or None while one of them has none."""
    workers = await stub.ListWorkers(pb.ListWorkersRequest(page_size=100))
    found = {
        w.instance_id: w.id
        for w in workers.workers
        if w.state == pb.WORKER_STATE_ACTIVE and w.instance_id in instances
    }
    return found if set(found) == instances else None


async def settled(stub: Any, instances: set[str]) -> dict[str, pb.Session] | None:
    """Every session assigned to an active worker of ``instances``, none moving, or None."""
    ids = await active_ids(stub, instances)
    if ids is None:
        LAST_SEEN[:] = [f"not every one of {sorted(instances)} has an active worker"]
        return None
    sessions: dict[str, pb.Session] = {}
    token = ""
    while True:
        page = await stub.ListSessions(pb.ListSessionsRequest(page_size=500, page_token=token))
        sessions.update({s.id: s for s in page.sessions})
        if not (token := page.next_page_token):
            break
    live = set(ids.values())
    ok = len(sessions) == SESSIONS and all(
        s.state == pb.SESSION_STATE_ASSIGNED and s.worker_id in live for s in sessions.values()
    )
    if not ok:  # what a failure reports: where the sessions were at the last look
        seen = Counter((pb.SessionState.Name(s.state), s.worker_id) for s in sessions.values())
        LAST_SEEN[:] = [f"{n} {state} on {worker or '-'}" for (state, worker), n in seen.items()]
    return sessions if ok else None


def journals(cluster: Cluster) -> list[dict[str, Any]]:
    lines = []
    for worker in cluster.workers.values():
        for raw in worker.journal.read_text().splitlines():
            line = json.loads(raw)
            line["instance"] = worker.name
            lines.append(line)
    return sorted(lines, key=lambda line: line["at"])


def overlaps(lines: list[dict[str, Any]]) -> list[str]:
    """Where two workers acted for one session at once: an epoch acted on by two workers, or
    an act at an older epoch after an act at a newer one."""
    found = []
    holder_of: dict[tuple[str, int], str] = {}
    newest: dict[str, tuple[int, float, str]] = {}
    for act in (line for line in lines if line["kind"] == "act"):
        session, epoch, worker = act["session"], act["epoch"], act["worker"]
        if holder_of.setdefault((session, epoch), worker) != worker:
            found.append(f"{session}: epoch {epoch} acted on by two workers")
        seen = newest.get(session)
        if seen is not None and epoch < seen[0]:
            found.append(
                f"{session}: {worker} acted at epoch {epoch} at {act['at']:.3f}, after "
                f"{seen[2]} acted at epoch {seen[0]} at {seen[1]:.3f}"
            )
        else:
            newest[session] = (epoch, act["at"], worker)
    return found


def acting_on(cluster: Cluster, stub: Any, instances: set[str], since: float) -> Callable[[], Any]:
    """The placement, once every session is on a live worker that has acted for it at its
    epoch after ``since`` (rebalancing may still be moving some: then not yet)."""

    async def check() -> dict[str, pb.Session] | None:
        placed = await settled(stub, instances)
        acted = {
            (line["session"], line["worker"], line["epoch"])
            for line in journals(cluster)
            if line["kind"] == "act" and line["at"] > since
        }
        if placed is None or any(
            (s.id, s.worker_id, s.epoch) not in acted for s in placed.values()
        ):
            return None
        return placed

    return check


# Six waits for the registry, each bounded on its own; on a loaded machine they add up.
@pytest.mark.timeout(300)
async def test_no_two_workers_ever_act_for_one_session(cluster: Cluster) -> None:
    try:
        final, live = await through_every_fault(cluster)
    finally:
        # Read first: an overlap matters more than a scenario that did not finish.
        lines = journals(cluster)
        assert overlaps(lines) == []
    acts = sum(line["kind"] == "act" for line in lines)
    assert acts > SESSIONS * 50, f"only {acts} acts were journaled"
    assert all(final[s].worker_id in live for s in final)
    cluster.passed = True


async def through_every_fault(cluster: Cluster) -> tuple[dict[str, pb.Session], set[str]]:
    """The faults one after another; the final placement and the live workers' ids."""
    async with make_channel(cluster.target, token=DEV_INTERNAL_TOKEN) as channel:
        stub: Any = workers_pb2_grpc.WorkerRegistryStub(channel)
        for name in ("w1", "w2", "w3"):
            cluster.start_worker(name)
        await eventually(lambda: active_ids(stub, {"w1", "w2", "w3"}), "three workers")
        for i in range(SESSIONS):
            await stub.AssignSession(
                pb.AssignSessionRequest(
                    session_id=f"twilio:t{i % 20}:{i}", tenant_id=f"t{i % 20}", kind="twilio"
                )
            )
        await eventually(lambda: settled(stub, {"w1", "w2", "w3"}), "the first placement")

        # 1. A worker dies: its sessions go to the two others once its lease runs out.
        cluster.workers["w1"].process.kill()
        cluster.workers["w1"].process.wait()
        await eventually(lambda: settled(stub, {"w2", "w3"}), "the dead worker's sessions moved")

        # 2. A worker joins: sessions are handed over to it, each only once its holder stopped,
        # while a holder stalls now and then (a GC pause, a starved CPU) for well under its
        # lease: a revoke it has not read yet must not let the next worker start.
        live = {"w2", "w3", "w4"}
        cluster.start_worker("w4")

        async def rebalanced() -> bool:
            placed, ids = await settled(stub, live), await active_ids(stub, live)
            if placed is None or ids is None:
                return False
            return sum(s.worker_id == ids["w4"] for s in placed.values()) >= 50

        stalling = asyncio.create_task(stall_now_and_then(cluster.workers["w3"].process.pid))
        try:
            await eventually(rebalanced, "the new worker filled")
        finally:
            stalling.cancel()
            os.kill(cluster.workers["w3"].process.pid, signal.SIGCONT)

        # 3. The registry dies and comes back: leases and placements are in Postgres.
        before = await active_ids(stub, live)
        cluster.registry.kill()
        await asyncio.sleep(0.5)
        cluster.registry.start()
        await eventually(lambda: settled(stub, live), "the placements after a registry restart")
        kept = await active_ids(stub, live)

        # 4. A worker is cut off past its lease: it must stop on its own, then come back.
        frozen = cluster.workers["w2"].process
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            await eventually(
                lambda: settled(stub, {"w3", "w4"}), "the frozen worker's sessions moved"
            )
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        await eventually(rebalanced_over(stub, live), "the thawed worker given sessions again")
        thawed = await active_ids(stub, live)

        since = time.time()
        final = await eventually(acting_on(cluster, stub, live, since), "every holder acting")
        ids = await active_ids(stub, live)
    # A registry restart costs no worker its lease; a freeze past the lease does.
    assert kept == before
    assert thawed is not None
    assert kept is not None
    assert thawed["w2"] != kept["w2"]
    return final, set((ids or {}).values())


async def stall_now_and_then(pid: int, stall_s: float = 0.3, every_s: float = 0.6) -> None:
    while True:
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(stall_s)
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(every_s)


def rebalanced_over(stub: Any, instances: set[str]) -> Callable[[], Any]:
    """Every session placed, and every worker of ``instances`` holding some."""

    async def check() -> bool:
        placed, ids = await settled(stub, instances), await active_ids(stub, instances)
        if placed is None or ids is None:
            return False
        return {s.worker_id for s in placed.values()} == set(ids.values())

    return check
