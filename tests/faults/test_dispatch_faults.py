"""The dispatcher's promises under faults, judged job by job from the sandbox's record.

Real processes (tools/faults/dispatch_mesh.py): tenants, the workers registry, the Twilio
sandbox, an intake-only dispatcher replica that takes the Enqueues, and sending replicas,
each a twilio session worker placed by the registry.

- A replica is SIGKILLed while 1,000 jobs over 20 senders are being sent with tens in flight
  (the sandbox holds each create 150-300 ms), and another starts: every job ends SENT and
  its message is at the sandbox once; a second copy is tolerated only for a job whose
  attempt history records a lookup that could not settle (``ambiguous``), and is counted.
- Each recipient receives their messages in enqueue order, across the kill and the moves of
  the dead replica's senders (and the newcomer's rebalancing).
- Redis is flushed with jobs queued whose bells no replica has read: reconciliation from
  Postgres sends every one, once, in order.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tools.faults.dispatch_mesh import DispatchMesh, DispatchTenant, JobFate
from wamesh.dispatch.v1 import dispatch_pb2 as pb

REPO_ROOT = Path(__file__).resolve().parents[2]
TENANTS, SENDERS_PER_TENANT, RECIPIENTS_PER_SENDER = 4, 5, 4
SENDERS = TENANTS * SENDERS_PER_TENANT
KILL_JOBS = 1000
# Each create waits this long at the sandbox, so ~50 sends are in flight over the 80
# recipients (each recipient's jobs go one at a time) and the run lasts long enough to kill
# a replica in the middle of it.
LATENCY_MS = (150.0, 300.0)
# Short, so 12-13 jobs per recipient fit the time budget; long enough to be a real limit.
RECIPIENT_INTERVAL = timedelta(milliseconds=100)
# The kill comes once this share of the jobs is sent: well inside the run.
KILL_AFTER = 0.25


@dataclass(frozen=True)
class Planned:
    """A job as the test enqueued it; ``body`` tags it uniquely at the sandbox."""

    key: str
    tenant_id: str
    sender: str
    recipient: str
    body: str


@dataclass
class Verdict:
    """Every job's fate, sorted into what the test tolerates and what it does not."""

    once: int = 0
    not_sent: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    ambiguous_twice: list[str] = field(default_factory=list)
    unexplained_copies: list[str] = field(default_factory=list)
    wrong_sid: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    interrupted: int = 0  # an attempt begun and never recorded: cut by the SIGKILL
    found: int = 0  # settled by a lookup at the sandbox instead of a second create

    def failures(self) -> dict[str, list[str]]:
        return {
            name: items
            for name, items in (
                ("not SENT", self.not_sent),
                ("lost (never at the sandbox)", self.lost),
                ("copies with no unsettled ambiguity in their history", self.unexplained_copies),
                ("provider SID not one the sandbox made for it", self.wrong_sid),
                ("sandbox messages no job accounts for", self.strays),
            )
            if items
        }

    def summary(self, total: int) -> str:
        return (
            f"{total} jobs: {self.once} sent once, {len(self.ambiguous_twice)} twice after an "
            f"unsettled lookup, {self.interrupted} cut mid-send by the kill ({self.found} "
            f"settled by a lookup), {len(self.not_sent)} not SENT, {len(self.lost)} lost, "
            f"{len(self.unexplained_copies)} unexplained copies, {len(self.wrong_sid)} wrong "
            f"SIDs, {len(self.strays)} strays"
        )


def judge(
    plan: list[Planned], fates: dict[str, JobFate], messages: list[dict[str, Any]], run: str
) -> Verdict:
    """Each planned job against the dispatcher's database and the sandbox's record."""
    at_sandbox: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in messages:
        if message["body"].startswith(f"{run} #"):
            at_sandbox[message["body"]].append(message)
    verdict = Verdict()
    planned_bodies = {job.body for job in plan}
    verdict.strays = sorted(body for body in at_sandbox if body not in planned_bodies)
    for job in plan:
        fate = fates.get(job.key)
        copies = [
            m
            for m in at_sandbox.get(job.body, [])
            if (m["from"], m["to"]) == (f"whatsapp:{job.sender}", f"whatsapp:{job.recipient}")
        ]
        history = "never recorded" if fate is None else f"{fate.state} {list(fate.outcomes)}"
        where = f"{job.key} ({len(copies)} at the sandbox, {history})"
        if fate is None or fate.state != "sent":
            verdict.not_sent.append(where)
        if fate is not None:
            verdict.interrupted += fate.attempts > len(fate.outcomes)
            verdict.found += "found" in fate.outcomes
            if fate.provider_sid not in {m["sid"] for m in copies} and copies:
                verdict.wrong_sid.append(f"{where}: {fate.provider_sid}")
        if not copies:
            verdict.lost.append(where)
        elif len(copies) == 1:
            verdict.once += 1
        elif len(copies) == 2 and fate is not None and "ambiguous" in fate.outcomes:
            verdict.ambiguous_twice.append(where)
        else:
            verdict.unexplained_copies.append(where)
    return verdict


def out_of_order(
    plan: list[Planned], fates: dict[str, JobFate], messages: list[dict[str, Any]]
) -> list[str]:
    """Recipients whose messages reached the sandbox in another order than their jobs' enqueue
    order (each job at its first copy; a second copy is the duplicate check's business)."""
    seq_of = {job.body: fates[job.key].seq for job in plan if job.key in fates}
    enqueued: dict[str, list[int]] = defaultdict(list)
    for job in plan:
        if job.key in fates:
            enqueued[job.recipient].append(fates[job.key].seq)
    received: dict[str, list[int]] = defaultdict(list)
    for message in messages:  # oldest first: the order the sandbox accepted them in
        seq = seq_of.get(message["body"])
        recipient = message["to"].removeprefix("whatsapp:")
        if seq is not None and seq not in received[recipient]:
            received[recipient].append(seq)
    found = []
    for recipient, seqs in sorted(enqueued.items()):
        got = received.get(recipient, [])
        if got != sorted(got):
            found.append(f"{recipient}: enqueued {sorted(seqs)}, received {got}")
    return found


def plan_jobs(
    run: str, tenants: list[DispatchTenant], jobs: int, recipients: int, recipient_prefix: str
) -> list[Planned]:
    """``jobs`` jobs dealt round-robin over every sender, then over each sender's
    ``recipients`` recipients, so every recipient has a long chain to keep in order."""
    senders = [(tenant.tenant_id, number) for tenant in tenants for number in tenant.senders]
    planned = []
    for n in range(jobs):
        s = n % len(senders)
        tenant_id, sender = senders[s]
        recipient = f"{recipient_prefix}{s:02d}{(n // len(senders)) % recipients:02d}"
        key = f"{run}-{n:04d}"
        planned.append(Planned(key, tenant_id, sender, recipient, f"{run} #{n:04d} to {recipient}"))
    return planned


def requests_of(plan: list[Planned]) -> list[pb.EnqueueRequest]:
    return [
        pb.EnqueueRequest(
            tenant_id=job.tenant_id,
            idempotency_key=job.key,
            sender_number=job.sender,
            recipient_number=job.recipient,
            body=job.body,
        )
        for job in plan
    ]


async def make_tenants(mesh: DispatchMesh) -> list[DispatchTenant]:
    return [
        await mesh.create_tenant(SENDERS_PER_TENANT, recipient_interval=RECIPIENT_INTERVAL)
        for _ in range(TENANTS)
    ]


async def until_placed(mesh: DispatchMesh, sessions: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(map(len, (await mesh.senders_by_replica()).values())) < sessions:
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {sessions} sender sessions placed")
        await asyncio.sleep(0.2)


async def until_done(mesh: DispatchMesh, prefix: str, expected: int, timeout_s: float) -> float:
    """As ``mesh.until_done``; on a timeout, which senders stopped and which replica holds
    each (a sender left unsent on a live holder is a runner that stopped without handing
    its session back; one held by nobody is a placement that never came)."""
    try:
        return await mesh.until_done(prefix, expected, timeout_s)
    except TimeoutError as timeout:
        fates = await mesh.jobs(prefix)
        holder = {
            session.rsplit(":", 1)[1]: replica
            for replica, sessions in (await mesh.senders_by_replica()).items()
            for session in sessions
        }
        left: dict[str, int] = defaultdict(int)
        for fate in fates.values():
            if fate.state not in ("sent", "failed", "dead"):
                left[fate.sender_number] += 1
        stuck = [f"{s}: {n} unsent, held by {holder.get(s, 'nobody')}" for s, n in left.items()]
        raise AssertionError(f"{timeout}; by sender:\n" + "\n".join(sorted(stuck))) from None


@pytest.fixture(scope="module")
def mesh(request: pytest.FixtureRequest) -> Iterator[DispatchMesh]:
    data_dir = REPO_ROOT / ".wamesh" / "faults" / uuid.uuid4().hex[:12]
    failed_before = request.session.testsfailed
    with DispatchMesh(data_dir, replicas=2) as running:
        yield running
    # Kept after a failure: the processes' logs and the sandbox's record explain it.
    if request.session.testsfailed == failed_before:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"\nthe dispatch mesh's logs and sandbox record are kept in {data_dir}")


@dataclass
class KillRun:
    run: str
    plan: list[Planned]
    fates: dict[str, JobFate]
    messages: list[dict[str, Any]]
    killed: str
    killed_senders: int
    in_flight_at_kill: int
    sent_at_kill: int
    seconds: float


@pytest.fixture(scope="module")
def kill_run(mesh: DispatchMesh) -> KillRun:
    return asyncio.run(kill_while_sending(mesh))


async def kill_while_sending(mesh: DispatchMesh) -> KillRun:
    run = f"k{uuid.uuid4().hex[:6]}"
    tenants = await make_tenants(mesh)
    plan = plan_jobs(run, tenants, KILL_JOBS, RECIPIENTS_PER_SENDER, "+1555800")
    await mesh.sandbox_fault(count=None, latency_ms=LATENCY_MS[0], latency_max_ms=LATENCY_MS[1])
    started = time.monotonic()
    answers = await mesh.enqueue(requests_of(plan))
    assert not any(answer.already_existed for answer in answers)
    await until_placed(mesh, SENDERS)

    # The replica with the most senders dies mid-send; its sessions move once its lease ends.
    deadline = time.monotonic() + 30
    while (states := await mesh.job_states(f"{run}-")).get("sent", 0) < KILL_JOBS * KILL_AFTER:
        if time.monotonic() > deadline:
            raise AssertionError(f"sending never got going: the jobs are {states}")
        await asyncio.sleep(0.05)
    placed = await mesh.senders_by_replica()
    killed = max(sorted(mesh.sending_replicas()), key=lambda name: len(placed.get(name, [])))
    mesh.kill(killed)
    mesh.start_replica("d3")
    await until_done(mesh, f"{run}-", KILL_JOBS, timeout_s=40)
    seconds = time.monotonic() - started
    await mesh.clear_sandbox_faults()
    return KillRun(
        run=run,
        plan=plan,
        fates=await mesh.jobs(f"{run}-"),
        messages=await mesh.sandbox_messages(),
        killed=killed,
        killed_senders=len(placed.get(killed, [])),
        in_flight_at_kill=states.get("sending", 0),
        sent_at_kill=states.get("sent", 0),
        seconds=seconds,
    )


def test_a_replica_killed_mid_send_loses_nothing_and_sends_each_job_once(
    kill_run: KillRun,
) -> None:
    verdict = judge(kill_run.plan, kill_run.fates, kill_run.messages, kill_run.run)
    report = (
        f"{kill_run.killed} (holding {kill_run.killed_senders} of {SENDERS} senders) was "
        f"SIGKILLed with {kill_run.sent_at_kill} sent and ~{kill_run.in_flight_at_kill} in "
        f"flight; all done in {kill_run.seconds:.1f} s. " + verdict.summary(len(kill_run.plan))
    )
    print(report)
    failures = verdict.failures()
    assert not failures, report + "".join(
        f"\n{name} ({len(items)}): {items[:10]}" for name, items in failures.items()
    )
    # The fault was real: the kill cut sends in flight, and their successors resolved them.
    assert kill_run.killed_senders > 0, report
    assert kill_run.in_flight_at_kill > 0, report
    assert verdict.interrupted > 0, f"the kill cut no send in flight: {report}"


def test_each_recipient_receives_in_enqueue_order_across_the_kill(kill_run: KillRun) -> None:
    found = out_of_order(kill_run.plan, kill_run.fates, kill_run.messages)
    recipients = len({job.recipient for job in kill_run.plan})
    assert not found, f"{len(found)} of {recipients} recipients out of order:\n" + "\n".join(
        found[:10]
    )


async def test_a_redis_flush_with_jobs_queued_loses_none(mesh: DispatchMesh) -> None:
    run = f"f{uuid.uuid4().hex[:6]}"
    tenants = await make_tenants(mesh)
    # One job per sender first, so every sender's runner is up and listening to its bell:
    # what follows can only reach them through the bell, or, once it is lost, Postgres.
    warm = plan_jobs(f"{run}w", tenants, SENDERS, 1, "+1555801")
    await mesh.enqueue(requests_of(warm))
    await until_done(mesh, f"{run}w-", SENDERS, timeout_s=30)

    plan = plan_jobs(run, tenants, 200, 2, "+1555802")
    sending = sorted(mesh.sending_replicas())
    # Frozen for well under the lease's fence (4/5 of 2 s): the replicas keep their senders,
    # and only the bells they never read are lost.
    frozen_at = time.monotonic()
    with mesh.frozen(*sending):
        await mesh.enqueue(requests_of(plan))
        await mesh.flush_redis()
        frozen_s = time.monotonic() - frozen_at
    took = await until_done(mesh, f"{run}-", len(plan), timeout_s=30)

    fates = await mesh.jobs(f"{run}-")
    verdict = judge(plan, fates, await mesh.sandbox_messages(), run)
    report = (
        f"{len(plan)} jobs enqueued and their bells flushed while {sending} were frozen for "
        f"{frozen_s:.2f} s; done {took:.1f} s after. " + verdict.summary(len(plan))
    )
    print(report)
    failures = verdict.failures() | (
        {"twice": verdict.ambiguous_twice} if verdict.ambiguous_twice else {}
    )
    assert not failures, report + "".join(
        f"\n{name} ({len(items)}): {items[:10]}" for name, items in failures.items()
    )
    order = out_of_order(plan, fates, await mesh.sandbox_messages())
    assert not order, "out of order after the flush:\n" + "\n".join(order[:10])
