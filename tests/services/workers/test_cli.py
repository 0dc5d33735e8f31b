"""``wamesh workers`` and ``wamesh sessions`` against the real service (the CLI is
synchronous, so each command runs in a thread while the service serves in the test's loop)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from typer.testing import CliRunner, Result

from tests.services.workers.workers_testkit import registration, unique
from wamesh.workers.v1 import workers_pb2 as pb
from wamesh_kit.cli import app
from wamesh_kit.rpc.server import GrpcService


async def run(service: GrpcService, *args: str) -> Result:
    command = [*args, "--target", f"127.0.0.1:{service.port}"]
    return await asyncio.to_thread(lambda: CliRunner().invoke(app, command))


def printed(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


async def test_workers_and_sessions_from_the_terminal(service: GrpcService, internal: Any) -> None:
    kind = unique("k")
    first = (await internal.RegisterWorker(registration(kind=kind))).worker
    second = (await internal.RegisterWorker(registration(kind=kind))).worker
    session_id = unique("s")

    assigned = printed(
        await run(
            service,
            "sessions",
            "assign",
            session_id,
            "--tenant-id",
            "t-9",
            "--kind",
            kind,
            "--worker-id",
            first.id,
            "--json",
        )
    )
    listed = printed(await run(service, "workers", "list", "--kind", kind, "--json"))
    shown = printed(await run(service, "workers", "show", first.id, "--json"))
    route = printed(await run(service, "sessions", "show", session_id, "--json"))
    drained = printed(await run(service, "workers", "drain", first.id, "--json"))
    await internal.Heartbeat(pb.HeartbeatRequest(worker_id=first.id))  # it stopped the session
    moved = printed(await run(service, "sessions", "list", "--worker-id", second.id, "--json"))
    released = await run(service, "sessions", "release", session_id)
    gone = await run(service, "sessions", "show", session_id)

    assert assigned[0]["worker_id"] == first.id
    assert {w["id"] for w in listed} == {first.id, second.id}
    assert [s["id"] for s in shown["sessions"]] == [session_id]
    assert route["worker_id"] == first.id
    assert drained[0]["state"] == "WORKER_STATE_DRAINING"
    assert [s["id"] for s in moved] == [session_id]
    assert released.exit_code == 0
    assert gone.exit_code == 1
    assert "NOT_FOUND" in gone.output


async def test_the_login_qr_code_prints_scannable(service: GrpcService, internal: Any) -> None:
    kind = unique("k")
    worker = (await internal.RegisterWorker(registration(kind=kind))).worker
    session = (
        await internal.AssignSession(
            pb.AssignSessionRequest(session_id=unique("s"), tenant_id="t-9", kind=kind)
        )
    ).session
    await internal.PutQrCode(
        pb.PutQrCodeRequest(
            session_id=session.id,
            worker_id=worker.id,
            epoch=session.epoch,
            qr_payload="2@login-code",
        )
    )

    terminal = await run(service, "sessions", "qr", session.id, "--tenant-id", "t-9")
    as_json = printed(
        await run(service, "sessions", "qr", session.id, "--tenant-id", "t-9", "--json")
    )
    missing = await run(service, "sessions", "qr", "no-such", "--tenant-id", "t-9")

    assert terminal.exit_code == 0
    assert "█" in terminal.output
    assert "expires at" in terminal.output
    assert as_json["qr_payload"] == "2@login-code"
    assert missing.exit_code == 1
    assert "NOT_FOUND" in missing.output


async def test_a_bad_state_filter_is_refused_before_any_call(service: GrpcService) -> None:
    result = await run(service, "workers", "list", "--state", "sideways")

    assert result.exit_code == 2
    assert "--state" in result.output
