"""A session worker process for the fault suite: the worker SDK, acting for what it holds.

    python -m tools.faults.session_worker --target 127.0.0.1:PORT --name w1 --log w1.jsonl

Every ``--act-every`` seconds it acts for each session it may act for, and writes one JSON
line per event to ``--log``: ``assigned`` and ``revoked`` (the SDK's callbacks) and ``act``.
An act's time is read in the same synchronous step as the SDK's answer that it may act, so
a freeze (SIGSTOP) can only make a line late, never date it later than the permission; each
batch of lines is one ``os.write``, so a SIGKILL loses no line the kernel took.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import time
from typing import Any

from wamesh.workers.v1 import workers_pb2 as pb
from wamesh_kit.settings import DEV_INTERNAL_TOKEN
from wamesh_worker import SessionWorker, WorkerSpec


class Journal:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, lines: list[dict[str, Any]]) -> None:
        if lines:
            os.write(self._fd, "".join(json.dumps(line) + "\n" for line in lines).encode())


async def run(args: argparse.Namespace) -> None:
    journal = Journal(args.log)
    sdk: SessionWorker

    async def assigned(session: pb.Session) -> None:
        journal.write([event("assigned", sdk.worker_id, session.id, session.epoch)])

    async def revoked(session_id: str) -> None:
        journal.write([event("revoked", sdk.worker_id, session_id, 0)])

    sdk = SessionWorker(
        args.target,
        DEV_INTERNAL_TOKEN,
        WorkerSpec(
            instance_id=args.name, kind=args.kind, endpoint=f"{args.name}:1", capacity=args.capacity
        ),
        on_assigned=assigned,
        on_revoked=revoked,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with sdk:
        print(sdk.worker_id, flush=True)
        while not stop.is_set():
            journal.write(acts(sdk))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.act_every)


def acts(sdk: SessionWorker) -> list[dict[str, Any]]:
    lines = []
    for session_id in list(sdk.held()):
        at = time.time()
        epoch = sdk.epoch_of(session_id)  # no await between the clock and the permission
        if epoch is not None:
            lines.append(
                {
                    "kind": "act",
                    "at": at,
                    "worker": sdk.worker_id,
                    "session": session_id,
                    "epoch": epoch,
                }
            )
    return lines


def event(kind: str, worker_id: str, session_id: str, epoch: int) -> dict[str, Any]:
    return {
        "kind": kind,
        "at": time.time(),
        "worker": worker_id,
        "session": session_id,
        "epoch": epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True)
    parser.add_argument("--name", required=True, help="the instance id")
    parser.add_argument("--log", required=True)
    parser.add_argument("--kind", default="twilio")
    parser.add_argument("--capacity", type=int, default=100)
    parser.add_argument("--act-every", type=float, default=0.1)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
