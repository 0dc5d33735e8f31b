"""Workers register, heartbeat and are placed sessions; leases fence them; bad input is refused
naming its field. Over real gRPC, Postgres and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from tests.services.workers.workers_testkit import registration, session_request, unique
from wamesh.workers.v1 import workers_pb2 as pb


async def register(internal: Any, **kwargs: Any) -> pb.Worker:
    response = await internal.RegisterWorker(registration(**kwargs))
    worker: pb.Worker = response.worker
    return worker


async def assign(internal: Any, **kwargs: Any) -> pb.Session:
    response = await internal.AssignSession(session_request(**kwargs))
    session: pb.Session = response.session
    return session


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value.code(), error.value.details() or ""


async def test_a_session_goes_to_the_worker_with_most_free_capacity(internal: Any) -> None:
    kind = unique("k")
    small = await register(internal, kind=kind, capacity=2)
    large = await register(internal, kind=kind, capacity=5)

    placed = [await assign(internal, kind=kind) for _ in range(5)]

    holders = [s.worker_id for s in placed]
    assert holders.count(large.id) == 4
    assert holders.count(small.id) == 1
    assert all(s.state == pb.SESSION_STATE_ASSIGNED and s.epoch == 1 for s in placed)


async def test_with_no_fitting_worker_a_session_waits_then_is_placed(internal: Any) -> None:
    kind = unique("k")
    waiting = await assign(internal, kind=kind, required_labels={"region": "eu"})
    assert waiting.state == pb.SESSION_STATE_PENDING
    await register(internal, kind=kind, capacity=3, region="us")
    eu = await register(internal, kind=kind, capacity=3, region="eu")

    route = await internal.RouteSession(pb.RouteSessionRequest(session_id=waiting.id))

    assert (route.worker_id, route.endpoint, route.epoch) == (eu.id, eu.endpoint, 1)


async def test_a_full_worker_gets_nothing(internal: Any) -> None:
    kind = unique("k")
    await register(internal, kind=kind, capacity=1)
    await assign(internal, kind=kind)

    waiting = await assign(internal, kind=kind)

    assert waiting.state == pb.SESSION_STATE_PENDING


async def test_a_lost_worker_is_fenced_and_its_sessions_move_under_new_epochs(
    internal: Any,
) -> None:
    kind = unique("k")
    dying = await register(internal, kind=kind, capacity=10)
    sessions = [await assign(internal, kind=kind) for _ in range(3)]
    assert {s.worker_id for s in sessions} == {dying.id}
    alive = await register(internal, kind=kind, capacity=10)

    async def keep_alive() -> None:
        while True:
            await internal.Heartbeat(pb.HeartbeatRequest(worker_id=alive.id, load=0.1))
            await asyncio.sleep(0.3)

    beating = asyncio.create_task(keep_alive())
    try:
        # `dying` sends no heartbeat: past its 2 s lease the sweep loses it.
        async def moved() -> list[pb.Session] | None:
            listed = await internal.ListSessions(pb.ListSessionsRequest(worker_id=alive.id))
            return list(listed.sessions) if len(listed.sessions) == 3 else None

        found = await eventually_async(moved)
        code, details = await code_of(
            internal.Heartbeat(
                pb.HeartbeatRequest(
                    worker_id=dying.id,
                    sessions=[pb.HeldSession(session_id=s.id, epoch=s.epoch) for s in sessions],
                )
            )
        )
    finally:
        beating.cancel()
    assert all(s.epoch == 2 for s in found)
    assert code == grpc.StatusCode.NOT_FOUND
    assert "worker_id" in details
    workers = await internal.ListWorkers(pb.ListWorkersRequest(kind=kind))
    states = {w.id: w.state for w in workers.workers}
    assert states == {dying.id: pb.WORKER_STATE_LOST, alive.id: pb.WORKER_STATE_ACTIVE}


async def eventually_async(check: Callable[[], Any], timeout_s: float = 15) -> Any:
    async with asyncio.timeout(timeout_s):
        while (found := await check()) is None:  # noqa: ASYNC110 - polled over gRPC
            await asyncio.sleep(0.1)
    return found


async def test_a_heartbeat_lists_what_the_worker_holds_no_longer(internal: Any) -> None:
    kind = unique("k")
    worker = await register(internal, kind=kind)
    held = await assign(internal, kind=kind)
    await release_on(internal, worker.id, held.id, held.epoch)

    beat = await internal.Heartbeat(
        pb.HeartbeatRequest(
            worker_id=worker.id,
            sessions=[
                pb.HeldSession(session_id=held.id, epoch=held.epoch + 1),
                pb.HeldSession(session_id="never-existed", epoch=1),
            ],
        )
    )

    assert sorted(beat.release_session_ids) == sorted([held.id, "never-existed"])


async def release_on(internal: Any, worker_id: str, session_id: str, epoch: int) -> None:
    """The worker lists the session as held and is told nothing."""
    beat = await internal.Heartbeat(
        pb.HeartbeatRequest(
            worker_id=worker_id, sessions=[pb.HeldSession(session_id=session_id, epoch=epoch)]
        )
    )
    assert list(beat.release_session_ids) == []


async def route_of(internal: Any, session_id: str) -> pb.RouteSessionResponse:
    route: pb.RouteSessionResponse = await internal.RouteSession(
        pb.RouteSessionRequest(session_id=session_id)
    )
    return route


async def test_a_held_session_moves_only_once_its_holder_has_stopped(internal: Any) -> None:
    kind = unique("k")
    holder = await register(internal, kind=kind)
    held = await assign(internal, kind=kind)
    other = await register(internal, kind=kind)
    listing = [pb.HeldSession(session_id=held.id, epoch=held.epoch)]
    stream = internal.WatchAssignments(pb.WatchAssignmentsRequest(worker_id=other.id))
    assert (await stream.read()).action == pb.ASSIGNMENT_ACTION_SYNCED

    moving = await internal.AssignSession(
        pb.AssignSessionRequest(
            session_id=held.id, tenant_id=held.tenant_id, kind=kind, worker_id=other.id
        )
    )
    route_code, route_details = await code_of(route_of(internal, held.id))
    still_held = await internal.Heartbeat(
        pb.HeartbeatRequest(worker_id=holder.id, sessions=listing)
    )
    qr_code, _ = await code_of(
        internal.PutQrCode(
            pb.PutQrCodeRequest(
                session_id=held.id, worker_id=holder.id, epoch=held.epoch, qr_payload="q"
            )
        )
    )
    snapshot = internal.WatchAssignments(pb.WatchAssignmentsRequest(worker_id=holder.id))
    first_of_holder = await snapshot.read()
    snapshot.cancel()
    while_listed = await route_code_of(internal, held.id)
    await internal.Heartbeat(pb.HeartbeatRequest(worker_id=holder.id))
    arrived = await stream.read()
    stream.cancel()
    route = await route_of(internal, held.id)

    assert moving.session.state == pb.SESSION_STATE_MOVING
    assert (moving.session.worker_id, moving.session.moving_to) == (holder.id, other.id)
    assert moving.session.epoch == held.epoch
    assert route_code == grpc.StatusCode.FAILED_PRECONDITION
    assert "moving" in route_details
    assert list(still_held.release_session_ids) == [held.id]
    assert qr_code == grpc.StatusCode.FAILED_PRECONDITION
    assert first_of_holder.action == pb.ASSIGNMENT_ACTION_SYNCED  # told to stop: not in it
    assert while_listed == grpc.StatusCode.FAILED_PRECONDITION
    assert (arrived.action, arrived.session.id) == (pb.ASSIGNMENT_ACTION_ASSIGNED, held.id)
    assert (arrived.session.worker_id, arrived.session.epoch) == (other.id, held.epoch + 1)
    assert (route.worker_id, route.epoch) == (other.id, held.epoch + 1)


async def route_code_of(internal: Any, session_id: str) -> grpc.StatusCode:
    code, _ = await code_of(route_of(internal, session_id))
    return code


async def test_a_holder_that_never_confirms_hands_over_when_its_lease_ends(
    internal: Any,
) -> None:
    kind = unique("k")
    holder = await register(internal, kind=kind)
    held = await assign(internal, kind=kind)
    other = await register(internal, kind=kind)

    async def keep_alive() -> None:
        while True:
            await internal.Heartbeat(pb.HeartbeatRequest(worker_id=other.id))
            await asyncio.sleep(0.3)

    beating = asyncio.create_task(keep_alive())
    try:
        await internal.AssignSession(
            pb.AssignSessionRequest(
                session_id=held.id, tenant_id=held.tenant_id, kind=kind, worker_id=other.id
            )
        )
        # `holder` keeps listing the session, then goes silent: past its 2 s lease it is lost.
        await release_on_refusal(internal, holder.id, held)

        async def placed() -> pb.RouteSessionResponse | None:
            try:
                return await route_of(internal, held.id)
            except grpc.aio.AioRpcError:
                return None

        route = await eventually_async(placed)
    finally:
        beating.cancel()

    assert (route.worker_id, route.epoch) == (other.id, held.epoch + 1)


async def release_on_refusal(internal: Any, worker_id: str, held: pb.Session) -> None:
    beat = await internal.Heartbeat(
        pb.HeartbeatRequest(
            worker_id=worker_id, sessions=[pb.HeldSession(session_id=held.id, epoch=held.epoch)]
        )
    )
    assert list(beat.release_session_ids) == [held.id]


async def test_a_stale_expected_epoch_is_refused(internal: Any) -> None:
    kind = unique("k")
    first = await register(internal, kind=kind)
    second = await register(internal, kind=kind)
    session = await assign(internal, kind=kind)
    target = second.id if session.worker_id == first.id else first.id

    code, details = await code_of(
        internal.AssignSession(
            pb.AssignSessionRequest(
                session_id=session.id,
                tenant_id=session.tenant_id,
                kind=kind,
                worker_id=target,
                expected_epoch=session.epoch + 5,
            )
        )
    )

    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "expected_epoch" in details


async def test_a_second_process_with_a_live_instance_id_is_refused(internal: Any) -> None:
    spec = registration()
    first = (await internal.RegisterWorker(spec)).worker
    retry = (await internal.RegisterWorker(spec)).worker  # its answer was lost: the same
    await internal.Heartbeat(pb.HeartbeatRequest(worker_id=first.id))

    code, details = await code_of(internal.RegisterWorker(spec))

    assert retry.id == first.id
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "instance_id" in details


async def test_assignments_stream_a_snapshot_then_changes(internal: Any) -> None:
    kind = unique("k")
    worker = await register(internal, kind=kind)
    before = await assign(internal, kind=kind)
    stream = internal.WatchAssignments(pb.WatchAssignmentsRequest(worker_id=worker.id))
    first = await stream.read()
    synced = await stream.read()
    after = await assign(internal, kind=kind)
    assigned = await stream.read()
    await internal.ReleaseSession(pb.ReleaseSessionRequest(session_id=before.id))
    revoked = await stream.read()
    stream.cancel()

    assert (first.action, first.session.id) == (pb.ASSIGNMENT_ACTION_ASSIGNED, before.id)
    assert synced.action == pb.ASSIGNMENT_ACTION_SYNCED
    assert (assigned.action, assigned.session.id, assigned.session.epoch) == (
        pb.ASSIGNMENT_ACTION_ASSIGNED,
        after.id,
        1,
    )
    assert (revoked.action, revoked.session.id) == (pb.ASSIGNMENT_ACTION_REVOKED, before.id)


async def test_qr_codes_are_fenced_replaced_and_expire(internal: Any, admin: Any) -> None:
    kind = unique("k")
    worker = await register(internal, kind=kind)
    session = await assign(internal, kind=kind)

    def put(payload: str, epoch: int, worker_id: str = worker.id) -> Any:
        return internal.PutQrCode(
            pb.PutQrCodeRequest(
                session_id=session.id, worker_id=worker_id, epoch=epoch, qr_payload=payload
            )
        )

    stale = await code_of(put("old-epoch", session.epoch - 1))
    await put("first", session.epoch)
    await put("second", session.epoch)
    got = await admin.GetQrCode(
        pb.GetQrCodeRequest(tenant_id=session.tenant_id, session_id=session.id)
    )
    other_tenant = await code_of(
        admin.GetQrCode(pb.GetQrCodeRequest(tenant_id="t-other", session_id=session.id))
    )

    assert stale[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert "epoch" in stale[1]
    assert got.qr_payload == "second"
    assert other_tenant[0] == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            pb.RegisterWorkerRequest(instance_id="", kind="twilio", endpoint="e", capacity=1),
            "instance_id",
        ),
        (pb.RegisterWorkerRequest(instance_id="i", kind="", endpoint="e", capacity=1), "kind"),
        (
            pb.RegisterWorkerRequest(instance_id="i", kind="Bad Kind", endpoint="e", capacity=1),
            "kind",
        ),
        (
            pb.RegisterWorkerRequest(instance_id="i", kind="twilio", endpoint="", capacity=1),
            "endpoint",
        ),
        (
            pb.RegisterWorkerRequest(instance_id="i", kind="twilio", endpoint="e", capacity=0),
            "capacity",
        ),
        (
            pb.RegisterWorkerRequest(
                instance_id="i",
                kind="twilio",
                endpoint="e",
                capacity=1,
                labels={f"k{i}": "v" for i in range(33)},
            ),
            "labels",
        ),
        (pb.AssignSessionRequest(session_id="", tenant_id="t", kind="twilio"), "session_id"),
        (pb.AssignSessionRequest(session_id="s", tenant_id="", kind="twilio"), "tenant_id"),
        (
            pb.AssignSessionRequest(
                session_id="s", tenant_id="t", kind="twilio", required_labels={"k": "v" * 300}
            ),
            "required_labels",
        ),
        (pb.HeartbeatRequest(worker_id="w", load=1.5), "load"),
        (
            pb.PutQrCodeRequest(session_id="s", worker_id="w", epoch=1, qr_payload="x" * 5000),
            "qr_payload",
        ),
        (pb.ListWorkersRequest(page_size=-1), "page_size"),
        (pb.ListWorkersRequest(page_token="forged"), "page_token"),
    ],
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    internal: Any, request_: Any, field: str
) -> None:
    method = {
        pb.RegisterWorkerRequest: internal.RegisterWorker,
        pb.AssignSessionRequest: internal.AssignSession,
        pb.HeartbeatRequest: internal.Heartbeat,
        pb.PutQrCodeRequest: internal.PutQrCode,
        pb.ListWorkersRequest: internal.ListWorkers,
    }[type(request_)]

    code, details = await code_of(method(request_))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details
    listed = await internal.ListWorkers(pb.ListWorkersRequest(kind="twilio", page_size=500))
    assert all(w.instance_id != "i" for w in listed.workers)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.RouteSession(pb.RouteSessionRequest(session_id="nope")), "session_id"),
        (
            lambda s: s.AssignSession(
                pb.AssignSessionRequest(
                    session_id=unique("s"), tenant_id="t", kind="twilio", worker_id="w-none"
                )
            ),
            "worker_id",
        ),
        (
            lambda s: s.WatchAssignments(pb.WatchAssignmentsRequest(worker_id="w-none")).read(),
            "worker_id",
        ),
    ],
    ids=["route", "assign to", "watch"],
)
async def test_unknown_ids_are_not_found_naming_the_field(
    internal: Any, call: Callable[[Any], Any], field: str
) -> None:
    code, details = await code_of(call(internal))

    assert code == grpc.StatusCode.NOT_FOUND
    assert field in details


async def test_route_session_survives_a_redis_flush(internal: Any, redis_url: str) -> None:
    import redis.asyncio as aioredis

    kind = unique("k")
    worker = await register(internal, kind=kind)
    session = await assign(internal, kind=kind)
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()

    route = await internal.RouteSession(pb.RouteSessionRequest(session_id=session.id))

    assert (route.worker_id, route.epoch) == (worker.id, 1)


async def keep_beating(internal: Any, *workers: pb.Worker) -> None:
    while True:
        for worker in workers:
            await internal.Heartbeat(pb.HeartbeatRequest(worker_id=worker.id, load=0.1))
        await asyncio.sleep(0.3)


async def test_a_worker_that_joins_is_filled_gradually_toward_even_load(internal: Any) -> None:
    kind = unique("k")
    first = await register(internal, kind=kind, capacity=10)
    placed = [await assign(internal, kind=kind) for _ in range(6)]
    joined = await register(internal, kind=kind, capacity=10)
    beating = asyncio.create_task(keep_beating(internal, first, joined))
    try:

        async def even() -> dict[str, int] | None:
            listed = await internal.ListWorkers(pb.ListWorkersRequest(kind=kind))
            counts = {w.id: w.session_count for w in listed.workers}
            return counts if counts == {first.id: 3, joined.id: 3} else None

        await eventually_async(even)
        workers = await internal.ListWorkers(pb.ListWorkersRequest(kind=kind))
    finally:
        beating.cancel()
    assert {s.worker_id for s in placed} == {first.id}
    assert all(w.state == pb.WORKER_STATE_ACTIVE for w in workers.workers)
    moved = await internal.ListSessions(pb.ListSessionsRequest(worker_id=joined.id))
    assert all(s.epoch == 2 for s in moved.sessions)


async def test_a_drained_worker_hands_its_sessions_over_and_gets_nothing_new(
    internal: Any, admin: Any
) -> None:
    kind = unique("k")
    drained = await register(internal, kind=kind, capacity=10)
    held = [await assign(internal, kind=kind) for _ in range(2)]
    other = await register(internal, kind=kind, capacity=10)

    answer = await admin.DrainWorker(pb.DrainWorkerRequest(worker_id=drained.id))
    later = await assign(internal, kind=kind)
    beat = await internal.Heartbeat(pb.HeartbeatRequest(worker_id=drained.id))
    unknown = await code_of(admin.DrainWorker(pb.DrainWorkerRequest(worker_id="w-none")))

    assert answer.worker.state == pb.WORKER_STATE_DRAINING
    moved = await internal.ListSessions(pb.ListSessionsRequest(worker_id=other.id))
    assert {s.id for s in moved.sessions} == {s.id for s in held} | {later.id}
    assert beat.lease_expires_at.seconds > 0  # still heartbeating while it drains
    assert unknown[0] == grpc.StatusCode.NOT_FOUND
    assert "worker_id" in unknown[1]


async def test_draining_is_for_admins_only(internal: Any) -> None:
    worker = await register(internal)

    code, _ = await code_of(internal.DrainWorker(pb.DrainWorkerRequest(worker_id=worker.id)))

    assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_metrics_count_placements_moves_losses_and_states(
    internal: Any, service: Any
) -> None:
    kind = unique("k")
    lost = await register(internal, kind=kind, capacity=5)
    session = await assign(internal, kind=kind)
    alive = await register(internal, kind=kind, capacity=5)
    beating = asyncio.create_task(keep_beating(internal, alive))

    def sample(name: str, **labels: str) -> float:
        return float(service.registry.get_sample_value(name, labels) or 0.0)

    async def moved_and_counted() -> bool | None:
        route = await internal.RouteSession(pb.RouteSessionRequest(session_id=session.id))
        counted = sample("wamesh_worker_session_moves_total") >= 1
        censused = sample("wamesh_workers", state="lost") >= 1
        return True if route.worker_id == alive.id and counted and censused else None

    try:
        await eventually_async(moved_and_counted)
    finally:
        beating.cancel()
    # The module's database is shared: workers of earlier tests are lost here too.
    assert sample("wamesh_worker_lease_losses_total") >= 1
    assert sample("wamesh_worker_session_placements_total") >= 2
    assert sample("wamesh_worker_sessions", state="assigned") >= 1
    assert sample("wamesh_worker_sweep_seconds_count") >= 1
    assert sample("wamesh_worker_placement_seconds_count") >= 2  # created, then lost
    assert lost.id != alive.id


async def test_status_reports_are_fenced_kept_and_streamed_per_tenant(
    internal: Any, admin: Any
) -> None:
    kind = unique("k")
    worker = await register(internal, kind=kind)
    mine = await assign(internal, kind=kind, tenant_id="t-mine")
    theirs = await assign(internal, kind=kind, tenant_id="t-theirs")
    stream = admin.WatchSessionEvents(pb.WatchSessionEventsRequest(tenant_id="t-mine"))

    def report(session: pb.Session, status: Any, epoch: int) -> Any:
        return internal.ReportSessionStatus(
            pb.ReportSessionStatusRequest(
                session_id=session.id,
                worker_id=worker.id,
                epoch=epoch,
                status=status,
                detail="scan me",
            )
        )

    await report(theirs, pb.SESSION_STATUS_CONNECTED, theirs.epoch)
    await report(mine, pb.SESSION_STATUS_QR_REQUIRED, mine.epoch)
    stale = await code_of(report(mine, pb.SESSION_STATUS_CONNECTED, mine.epoch + 1))
    unknown = await code_of(report(mine, 42, mine.epoch))
    first = await stream.read()
    stream.cancel()
    listed = await internal.ListSessions(pb.ListSessionsRequest(tenant_id="t-mine"))

    assert stale[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert "epoch" in stale[1]
    assert unknown[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "status" in unknown[1]
    assert first.event.kind == pb.WORKER_EVENT_KIND_SESSION_STATUS
    assert (first.event.session_id, first.event.detail) == (mine.id, "qr_required: scan me")
    assert [s.status for s in listed.sessions if s.id == mine.id] == [pb.SESSION_STATUS_QR_REQUIRED]


async def test_an_event_stream_resumes_after_an_event_id(internal: Any, admin: Any) -> None:
    kind = unique("k")
    await register(internal, kind=kind)
    placed = await assign(internal, kind=kind, tenant_id="t-resume")
    history = await admin.ListEvents(pb.ListEventsRequest(tenant_id="t-resume"))
    [assigned] = history.events
    stream = admin.WatchSessionEvents(
        pb.WatchSessionEventsRequest(tenant_id="t-resume", after_event_id=str(int(assigned.id) - 1))
    )

    replayed = await stream.read()
    stream.cancel()
    bad = await code_of(
        admin.WatchSessionEvents(pb.WatchSessionEventsRequest(after_event_id="x")).read()
    )

    assert (replayed.event.id, replayed.event.session_id) == (assigned.id, placed.id)
    assert bad[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert "after_event_id" in bad[1]


async def test_placement_latency_counts_the_wait_for_a_fitting_worker(
    internal: Any, service: Any
) -> None:
    kind = unique("k")
    waiting = await assign(internal, kind=kind)
    await asyncio.sleep(0.5)
    await register(internal, kind=kind)

    def sample(name: str) -> float:
        return float(service.registry.get_sample_value(name, {}) or 0.0)

    async def placed() -> bool | None:
        route = await internal.RouteSession(pb.RouteSessionRequest(session_id=waiting.id))
        return True if route.worker_id else None

    await eventually_async(placed)
    assert waiting.state == pb.SESSION_STATE_PENDING
    assert sample("wamesh_worker_placement_seconds_count") == 1
    assert sample("wamesh_worker_placement_seconds_sum") >= 0.5
