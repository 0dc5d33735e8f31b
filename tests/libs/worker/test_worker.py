"""The worker SDK against the real registry: it holds what it is given, acts only while it
may, and lets a session go to its next worker only after its own stop has finished."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from tests.services.workers.workers_testkit import session_request, unique
from wamesh.workers.v1 import workers_pb2 as pb
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_INTERNAL_TOKEN
from wamesh_worker import SessionWorker, WorkerSpec


class Journal:
    """What the embedding process saw, in order."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    def on_assigned(self, name: str) -> Callable[[pb.Session], Any]:
        async def record(session: pb.Session) -> None:
            self.lines.append(("assigned", name, session.id))

        return record

    def on_revoked(self, name: str, takes_s: float = 0.0) -> Callable[[str], Any]:
        async def record(session_id: str) -> None:
            self.lines.append(("stopping", name, session_id))
            await asyncio.sleep(takes_s)  # an in-flight send finishing
            self.lines.append(("stopped", name, session_id))

        return record


@asynccontextmanager
async def worker(
    service: GrpcService, kind: str, name: str, journal: Journal, **kwargs: Any
) -> AsyncIterator[SessionWorker]:
    sdk = SessionWorker(
        f"127.0.0.1:{service.port}",
        DEV_INTERNAL_TOKEN,
        WorkerSpec(instance_id=unique(name), kind=kind, endpoint=f"{name}:1", capacity=10),
        on_assigned=journal.on_assigned(name),
        on_revoked=kwargs.pop("on_revoked", journal.on_revoked(name)),
        **kwargs,
    )
    async with sdk:
        yield sdk


async def until(check: Callable[[], Any], timeout_s: float = 15) -> Any:
    async with asyncio.timeout(timeout_s):
        while not (found := check()):  # noqa: ASYNC110 - state another task changes
            await asyncio.sleep(0.02)
    return found


async def test_it_holds_what_it_is_given_and_stops_what_is_released(
    service: GrpcService, internal: Any
) -> None:
    kind, journal = unique("k"), Journal()
    async with worker(service, kind, "a", journal) as sdk:
        session = (await internal.AssignSession(session_request(kind=kind))).session
        epoch = await until(lambda: sdk.epoch_of(session.id))
        await internal.ReleaseSession(pb.ReleaseSessionRequest(session_id=session.id))
        await until(lambda: ("stopped", "a", session.id) in journal.lines)
        after_release = sdk.epoch_of(session.id)

    assert epoch == session.epoch
    assert after_release is None
    assert journal.lines == [
        ("assigned", "a", session.id),
        ("stopping", "a", session.id),
        ("stopped", "a", session.id),
    ]


async def test_the_next_worker_starts_only_after_the_last_one_has_stopped(
    service: GrpcService, internal: Any
) -> None:
    kind, journal = unique("k"), Journal()
    async with (
        worker(service, kind, "a", journal, on_revoked=journal.on_revoked("a", 0.5)) as first,
        worker(service, kind, "b", journal) as second,
    ):
        session = (
            await internal.AssignSession(session_request(kind=kind, worker_id=first.worker_id))
        ).session
        await until(lambda: first.epoch_of(session.id))
        await internal.AssignSession(
            pb.AssignSessionRequest(
                session_id=session.id,
                tenant_id=session.tenant_id,
                kind=kind,
                worker_id=second.worker_id,
            )
        )
        epoch = await until(lambda: second.epoch_of(session.id))
        first_after = first.epoch_of(session.id)

    assert journal.lines[:4] == [
        ("assigned", "a", session.id),
        ("stopping", "a", session.id),
        ("stopped", "a", session.id),
        ("assigned", "b", session.id),
    ]
    assert (epoch, first_after) == (session.epoch + 1, None)


async def test_a_lease_in_doubt_stops_every_action_until_renewed(
    service: GrpcService, internal: Any
) -> None:
    kind, journal, skew = unique("k"), Journal(), [0.0]
    async with worker(service, kind, "a", journal, clock=lambda: time.monotonic() + skew[0]) as sdk:
        session = (await internal.AssignSession(session_request(kind=kind))).session
        await until(lambda: sdk.epoch_of(session.id))
        skew[0] = 60.0  # as if the process had been frozen for a minute
        in_doubt = sdk.epoch_of(session.id), sdk.held()
        await until(lambda: ("stopped", "a", session.id) in journal.lines)
        # The registry never lost it: the next heartbeat renews, and the snapshot gives it back.
        again = await until(lambda: sdk.epoch_of(session.id))

    assert in_doubt == (None, {})
    assert again == session.epoch


async def test_closing_stops_everything_then_leaves_so_sessions_move_at_once(
    service: GrpcService, internal: Any
) -> None:
    kind, journal = unique("k"), Journal()
    async with worker(service, kind, "b", journal) as staying:
        async with worker(service, kind, "a", journal) as leaving:
            session = (
                await internal.AssignSession(
                    session_request(kind=kind, worker_id=leaving.worker_id)
                )
            ).session
            await until(lambda: leaving.epoch_of(session.id))
        epoch = await until(lambda: staying.epoch_of(session.id))

    assert epoch == session.epoch + 1
    assert journal.lines.index(("stopped", "a", session.id)) < journal.lines.index(
        ("assigned", "b", session.id)
    )


async def test_the_holder_reports_its_status_and_login_code_and_no_one_else_can(
    service: GrpcService, internal: Any, admin: Any
) -> None:
    kind, journal = unique("k"), Journal()
    async with worker(service, kind, "a", journal) as sdk:
        session = (await internal.AssignSession(session_request(kind=kind))).session
        await until(lambda: sdk.epoch_of(session.id))
        reported = await sdk.report_status(session.id, pb.SESSION_STATUS_QR_REQUIRED, "scan me")
        put = await sdk.put_qr_code(session.id, "2@qr-payload")
        not_held = (
            await sdk.put_qr_code("never-assigned", "x"),
            await sdk.report_status("never-assigned", pb.SESSION_STATUS_CONNECTED),
        )
        code = await admin.GetQrCode(
            pb.GetQrCodeRequest(tenant_id=session.tenant_id, session_id=session.id)
        )
        [listed] = (
            await admin.ListSessions(pb.ListSessionsRequest(tenant_id=session.tenant_id, kind=kind))
        ).sessions

    assert (reported, put, not_held) == (True, True, (False, False))
    assert code.qr_payload == "2@qr-payload"
    assert listed.status == pb.SESSION_STATUS_QR_REQUIRED
