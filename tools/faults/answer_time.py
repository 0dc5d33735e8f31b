"""How long ingress takes to answer while the store is frozen, as a Twilio sender sees it.

    .venv/bin/python -m tools.faults.answer_time [--rate 150] [--freeze 20] [--target postgres]

Runs the real mesh (tools/faults/mesh.py), offers webhooks at ``--rate`` on a connection
each (Twilio's 15 s, retries of 5xx and timeouts), freezes PostgreSQL (or the conversations
process) with SIGSTOP for ``--freeze`` seconds, and prints, as JSON: answer times of every
attempt (all, and those that started during the freeze), the answers' statuses, each
MessageSid's fate once the spill is replayed, and ingress's resident memory before, right
after and a while after the stall. A measurement, not a test: the figures go in docs/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from tools.faults.mesh import FaultMesh
from tools.faults.twilio_sender import Attempt, Delivery, TwilioSender


def summary(attempts: list[Attempt]) -> dict[str, Any]:
    seconds = sorted(attempt.seconds for attempt in attempts)
    if not seconds:
        return {"attempts": 0}
    cuts = statistics.quantiles(seconds, n=100) if len(seconds) > 1 else seconds * 99
    return {
        "attempts": len(seconds),
        "p50_s": round(cuts[49], 3),
        "p99_s": round(cuts[98], 3),
        "max_s": round(seconds[-1], 3),
        "statuses": dict(Counter(str(attempt.status) for attempt in attempts)),
    }


def rss_mb(pid: int) -> float:
    rss: int = psutil.Process(pid).memory_info().rss
    return round(rss / 2**20, 1)


async def measure(mesh: FaultMesh, args: argparse.Namespace) -> dict[str, Any]:
    tenant = await mesh.create_tenant()
    sender = TwilioSender(
        mesh.ports["ingress"],
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        sender_number=tenant.number,
    )
    total_s = args.lead + args.freeze + args.tail
    webhooks = [
        sender.webhook(f"+1555{i % 1000:07d}", f"order #{i}")
        for i in range(int(args.rate * total_s))
    ]
    ingress_pid = mesh.services["ingress"].pid
    memory = {"before_mb": rss_mb(ingress_pid)}
    frozen_between: list[float] = []

    def freeze() -> None:
        pids = (
            [mesh.postgres_pid()]
            if args.target == "postgres"
            else [mesh.services["conversations"].pid]
        )
        with mesh.frozen(*pids):
            frozen_between.append(time.monotonic())
            time.sleep(args.freeze)
        frozen_between.append(time.monotonic())

    async def fault() -> None:
        await asyncio.sleep(args.lead)
        await asyncio.to_thread(freeze)

    deliveries: list[Delivery]
    deliveries, _ = await asyncio.gather(sender.offer(webhooks, args.rate), fault())
    memory["after_stall_mb"] = rss_mb(ingress_pid)
    stored = await mesh.settled(tenant.tenant_id)
    await asyncio.sleep(args.idle)
    memory["idle_after_mb"] = rss_mb(ingress_pid)
    start, end = frozen_between
    attempts = [attempt for delivery in deliveries for attempt in delivery.attempts]
    during = [attempt for attempt in attempts if start <= attempt.started <= end]
    after = [attempt for attempt in attempts if attempt.started > end]
    by_second = {
        f"{second:+d}s": summary([a for a in attempts if second <= a.started - start < second + 1])[
            "max_s"
        ]
        for second in range(-int(args.lead), int(end - start + args.tail))
    }
    return {
        "offered": {"per_s": args.rate, "webhooks": len(webhooks), "frozen": args.target},
        "freeze_s": round(end - start, 2),
        "answers_all": summary(attempts),
        "answers_started_during_freeze": summary(during),
        "answers_started_after_it": summary(after),
        "slowest_answer_by_second_from_the_freeze_s": by_second,
        "fates": {
            "acknowledged": sum(d.acknowledged for d in deliveries),
            "acknowledged_not_stored": sum(
                1 for d in deliveries if d.acknowledged and not stored.get(d.message_sid)
            ),
            "stored_twice": sum(1 for count in stored.values() if count > 1),
            "never_acknowledged": sum(1 for d in deliveries if not d.acknowledged),
        },
        "ingress_memory": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=150.0, help="webhooks per second")
    parser.add_argument("--freeze", type=float, default=20.0, help="seconds frozen")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds of load before")
    parser.add_argument("--tail", type=float, default=5.0, help="seconds of load after")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds idle, then memory")
    parser.add_argument("--target", choices=["postgres", "conversations"], default="postgres")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="wamesh-faults-") as data_dir,
        FaultMesh(Path(data_dir)) as mesh,
    ):
        print(json.dumps(asyncio.run(measure(mesh, args)), indent=2))


if __name__ == "__main__":
    main()
