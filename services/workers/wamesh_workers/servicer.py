"""The WorkerRegistry gRPC servicer: validation, access, and telling workers what changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from google.protobuf.duration_pb2 import Duration

from wamesh.workers.v1 import workers_pb2 as pb
from wamesh.workers.v1 import workers_pb2_grpc
from wamesh_kit.errors import FailedPrecondition, InvalidArgument, NotFound
from wamesh_kit.paging import PageTokens
from wamesh_kit.rpc.auth import Access, current_principal, require_tenant_access, requires
from wamesh_kit.telemetry import tag_tenant
from wamesh_kit.timestamps import optional_timestamp as timestamp
from wamesh_workers import validation
from wamesh_workers.announcer import Announcer, assignments_channel, raw_reply
from wamesh_workers.mapping import (
    STATE_NAMES,
    STATUS_NAMES,
    event_message,
    session_message,
    worker_message,
)
from wamesh_workers.metrics import RegistryMetrics
from wamesh_workers.settings import WorkersSettings
from wamesh_workers.store import LIVE, Outcome, Registration, SessionRow, WorkerStore, holds

log = logging.getLogger(__name__)
# How often an event stream looks for new events: dashboards, not the hot path.
EVENT_POLL_S = 0.25
Context = Any
BY_ID = PageTokens[tuple[str]](str)
BY_EVENT = PageTokens[tuple[int]](int)


def now() -> datetime:
    return datetime.now(UTC)


def qr_key(session_id: str) -> str:
    return f"wamesh:workers:qr:{{{session_id}}}"


def _duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromTimedelta(timedelta(seconds=seconds))
    return duration


class WorkerRegistry(workers_pb2_grpc.WorkerRegistryServicer):
    def __init__(
        self,
        store: WorkerStore,
        announcer: Announcer,
        redis: aioredis.Redis,
        settings: WorkersSettings,
        metrics: RegistryMetrics,
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._announcer = announcer
        self._redis = redis
        self._settings = settings

    async def _published(self, outcome: Outcome) -> None:
        """After a commit: tell the workers, refresh the routes, count it."""
        await self._announcer.announce(outcome.changes)
        self._metrics.count(outcome)

    # -- workers ---------------------------------------------------------------------------

    @requires(Access.INTERNAL)
    async def RegisterWorker(
        self, request: pb.RegisterWorkerRequest, context: Context
    ) -> pb.RegisterWorkerResponse:
        spec = Registration(
            instance_id=validation.text(request.instance_id, "instance_id"),
            kind=validation.kind(request.kind),
            endpoint=validation.text(request.endpoint, "endpoint", validation.MAX_ENDPOINT),
            capacity=validation.capacity(request.capacity),
            labels=validation.labels(request.labels, "labels"),
        )
        worker, outcome = await self._store.register(spec, now())
        await self._published(outcome)
        return pb.RegisterWorkerResponse(
            worker=worker_message(worker),
            heartbeat_interval=_duration(self._settings.heartbeat_interval_s),
            lease_ttl=_duration(self._settings.lease_ttl_s),
        )

    @requires(Access.INTERNAL)
    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        worker_id = validation.text(request.worker_id, "worker_id")
        if len(request.sessions) > validation.MAX_HELD:
            raise InvalidArgument(f"lists more than {validation.MAX_HELD}", field="sessions")
        held = [
            (s.session_id, validation.epoch(s.epoch, "sessions.epoch")) for s in request.sessions
        ]
        beat, outcome = await self._store.heartbeat(
            worker_id, validation.load(request.load), held, now()
        )
        await self._published(outcome)
        if beat is None:
            raise NotFound(
                "has no live lease: stop every session and register again", field="worker_id"
            )
        return pb.HeartbeatResponse(
            lease_expires_at=timestamp(beat.lease_expires_at),
            release_session_ids=beat.release_session_ids,
        )

    @requires(Access.INTERNAL)
    async def DeregisterWorker(
        self, request: pb.DeregisterWorkerRequest, context: Context
    ) -> pb.DeregisterWorkerResponse:
        outcome = await self._store.deregister(
            validation.text(request.worker_id, "worker_id"), now()
        )
        await self._published(outcome)
        return pb.DeregisterWorkerResponse()

    @requires(Access.INTERNAL)
    async def WatchAssignments(
        self, request: pb.WatchAssignmentsRequest, context: Context
    ) -> AsyncIterator[pb.WatchAssignmentsResponse]:
        worker_id = validation.text(request.worker_id, "worker_id")
        worker = await self._store.worker(worker_id)
        if worker.state not in LIVE:
            raise NotFound("has no live lease: register again", field="worker_id")
        async with self._subscribed(worker_id) as messages:
            snapshot = {s.id: s.epoch for s in await self._store.held_by(worker_id)}
            for session in await self._store.held_by(worker_id):
                yield pb.WatchAssignmentsResponse(
                    action=pb.ASSIGNMENT_ACTION_ASSIGNED, session=session_message(session)
                )
            yield pb.WatchAssignmentsResponse(action=pb.ASSIGNMENT_ACTION_SYNCED)
            async for change in self._changes(worker_id, messages):
                already = snapshot.get(change.session.id, -1) >= change.session.epoch
                if change.action == pb.ASSIGNMENT_ACTION_ASSIGNED and already:
                    continue  # announced while the snapshot was read: it showed it
                yield change

    @contextlib.asynccontextmanager
    async def _subscribed(self, worker_id: str) -> AsyncIterator[Any]:
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(assignments_channel(worker_id))
            yield pubsub

    async def _changes(
        self, worker_id: str, pubsub: Any
    ) -> AsyncIterator[pb.WatchAssignmentsResponse]:
        """Changes as they are announced, until the worker's lease is gone."""
        check_every = self._settings.heartbeat_interval_s
        while True:
            message = await pubsub.get_message(timeout=check_every)
            if message is not None:
                yield pb.WatchAssignmentsResponse.FromString(message["data"])
                continue
            if (await self._store.worker(worker_id)).state not in LIVE:
                return

    @requires(Access.ADMIN | Access.INTERNAL)
    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: Context
    ) -> pb.ListWorkersResponse:
        size = validation.page_size(request.page_size)
        if request.kind:
            validation.kind(request.kind)
        state = STATE_NAMES.get(request.state, "") if request.state else ""
        if request.state and not state:
            raise InvalidArgument("is not a worker state", field="state")
        query = ("workers", request.kind, state)
        after = BY_ID.decode(request.page_token, *query)
        rows = await self._store.list_workers(
            size + 1, after[0] if after else None, request.kind, state
        )
        page, more = rows[:size], len(rows) > size
        return pb.ListWorkersResponse(
            workers=[worker_message(w) for w in page],
            next_page_token=BY_ID.encode((page[-1].id,), *query) if more else "",
        )

    @requires(Access.ADMIN)
    async def DrainWorker(
        self, request: pb.DrainWorkerRequest, context: Context
    ) -> pb.DrainWorkerResponse:
        worker, outcome = await self._store.drain(
            validation.text(request.worker_id, "worker_id"), now()
        )
        await self._published(outcome)
        return pb.DrainWorkerResponse(worker=worker_message(worker))

    # -- session status and events ----------------------------------------------------------

    @requires(Access.INTERNAL)
    async def ReportSessionStatus(
        self, request: pb.ReportSessionStatusRequest, context: Context
    ) -> pb.ReportSessionStatusResponse:
        status = STATUS_NAMES.get(request.status)
        if status is None:
            raise InvalidArgument("is not a session status", field="status")
        detail = request.detail
        if len(detail) > validation.MAX_DETAIL:
            raise InvalidArgument(
                f"is longer than {validation.MAX_DETAIL} characters", field="detail"
            )
        await self._store.report_status(
            validation.text(request.session_id, "session_id"),
            validation.text(request.worker_id, "worker_id"),
            request.epoch,
            status,
            detail,
            now(),
        )
        return pb.ReportSessionStatusResponse()

    @requires(Access.ADMIN | Access.TENANT)
    async def WatchSessionEvents(
        self, request: pb.WatchSessionEventsRequest, context: Context
    ) -> AsyncIterator[pb.WatchSessionEventsResponse]:
        """Polls the event log: durable, in order, the same from every replica."""
        if current_principal().kind == "tenant" and not request.tenant_id:
            raise InvalidArgument("is required with a tenant token", field="tenant_id")
        if request.tenant_id:
            require_tenant_access(request.tenant_id)
        if request.after_event_id and not request.after_event_id.isdigit():
            raise InvalidArgument("is not an event id", field="after_event_id")
        after = (
            int(request.after_event_id)
            if request.after_event_id
            else await self._store.last_event_id()
        )
        while True:
            rows = await self._store.events_after(after, request.tenant_id)
            for row in rows:
                yield pb.WatchSessionEventsResponse(event=event_message(row))
                after = int(row["id"])
            if not rows:
                await asyncio.sleep(EVENT_POLL_S)

    # -- sessions --------------------------------------------------------------------------

    @requires(Access.ADMIN | Access.INTERNAL)
    async def AssignSession(
        self, request: pb.AssignSessionRequest, context: Context
    ) -> pb.AssignSessionResponse:
        wanted = SessionRow(
            id=validation.text(request.session_id, "session_id"),
            tenant_id=tag_tenant(validation.text(request.tenant_id, "tenant_id")),
            kind=validation.kind(request.kind),
            required_labels=validation.labels(request.required_labels, "required_labels"),
            state="pending",
            worker_id=None,
            epoch=0,
            assigned_at=None,
        )
        session, outcome = await self._store.assign(
            wanted,
            request.worker_id,
            validation.epoch(request.expected_epoch, "expected_epoch"),
            now(),
        )
        await self._published(outcome)
        return pb.AssignSessionResponse(session=session_message(session))

    @requires(Access.ADMIN | Access.INTERNAL)
    async def ReleaseSession(
        self, request: pb.ReleaseSessionRequest, context: Context
    ) -> pb.ReleaseSessionResponse:
        outcome = await self._store.release(
            validation.text(request.session_id, "session_id"),
            validation.epoch(request.expected_epoch, "expected_epoch"),
            now(),
        )
        await self._published(outcome)
        return pb.ReleaseSessionResponse()

    @requires(Access.ADMIN | Access.INTERNAL)
    async def RouteSession(
        self, request: pb.RouteSessionRequest, context: Context
    ) -> pb.RouteSessionResponse:
        session_id = validation.text(request.session_id, "session_id")
        cached = await self._announcer.cached_route(session_id)
        if cached is not None:
            return cached
        session, endpoint = await self._store.route(session_id)
        if session.state == "moving":
            raise FailedPrecondition("is moving between workers", field="session_id")
        if session.worker_id is None:
            raise FailedPrecondition("waits for a worker", field="session_id")
        with contextlib.suppress(Exception):  # the route is a cache: Postgres answered
            await self._announcer.remember_route(session, endpoint)
        return pb.RouteSessionResponse(
            worker_id=session.worker_id, endpoint=endpoint, epoch=session.epoch
        )

    @requires(Access.ADMIN | Access.INTERNAL | Access.TENANT)
    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Context
    ) -> pb.ListSessionsResponse:
        principal = current_principal()
        if principal.kind == "tenant" and not request.tenant_id:
            raise InvalidArgument("is required with a tenant token", field="tenant_id")
        if request.tenant_id:
            require_tenant_access(request.tenant_id)
        if request.kind:
            validation.kind(request.kind)
        size = validation.page_size(request.page_size)
        query = ("sessions", request.tenant_id, request.worker_id, request.kind)
        after = BY_ID.decode(request.page_token, *query)
        rows = await self._store.list_sessions(
            size + 1,
            after[0] if after else None,
            request.tenant_id,
            request.worker_id,
            request.kind,
        )
        page, more = rows[:size], len(rows) > size
        return pb.ListSessionsResponse(
            sessions=[session_message(s) for s in page],
            next_page_token=BY_ID.encode((page[-1].id,), *query) if more else "",
        )

    # -- QR codes and events ---------------------------------------------------------------

    @requires(Access.INTERNAL)
    async def PutQrCode(
        self, request: pb.PutQrCodeRequest, context: Context
    ) -> pb.PutQrCodeResponse:
        session_id = validation.text(request.session_id, "session_id")
        worker_id = validation.text(request.worker_id, "worker_id")
        payload = validation.text(request.qr_payload, "qr_payload", validation.MAX_QR_PAYLOAD)
        session = await self._store.session(session_id)
        if not holds(session, worker_id, request.epoch):
            raise FailedPrecondition(
                f"is not the session's holder at epoch {request.epoch}", field="epoch"
            )
        ttl_s = self._settings.qr_ttl_s
        if request.HasField("ttl") and 0 < request.ttl.ToTimedelta().total_seconds() < ttl_s:
            ttl_s = request.ttl.ToTimedelta().total_seconds()
        stored = pb.GetQrCodeResponse(
            qr_payload=payload, expires_at=timestamp(now() + timedelta(seconds=ttl_s))
        )
        # SET replaces: a new code makes the old one unreadable at once.
        await self._redis.set(qr_key(session_id), stored.SerializeToString(), px=int(ttl_s * 1000))
        await self._store.record_qr(session, now())
        return pb.PutQrCodeResponse(expires_at=stored.expires_at)

    @requires(Access.ADMIN | Access.TENANT)
    async def GetQrCode(
        self, request: pb.GetQrCodeRequest, context: Context
    ) -> pb.GetQrCodeResponse:
        require_tenant_access(validation.text(request.tenant_id, "tenant_id"))
        session = await self._store.session(validation.text(request.session_id, "session_id"))
        if session.tenant_id != request.tenant_id:
            raise NotFound("no such session", field="session_id")
        raw = await self._redis.get(qr_key(session.id))
        if raw is None:
            raise NotFound(
                "has no current QR code (none was put, or it expired)", field="session_id"
            )
        return pb.GetQrCodeResponse.FromString(raw_reply(raw))

    @requires(Access.ADMIN | Access.TENANT)
    async def ListEvents(
        self, request: pb.ListEventsRequest, context: Context
    ) -> pb.ListEventsResponse:
        principal = current_principal()
        if principal.kind == "tenant" and not request.tenant_id:
            raise InvalidArgument("is required with a tenant token", field="tenant_id")
        if request.tenant_id:
            require_tenant_access(request.tenant_id)
        size = validation.page_size(request.page_size)
        query = ("events", request.worker_id, request.session_id, request.tenant_id)
        before = BY_EVENT.decode(request.page_token, *query)
        rows = await self._store.list_events(
            size + 1,
            before[0] if before else None,
            request.worker_id,
            request.session_id,
            request.tenant_id,
        )
        page, more = rows[:size], len(rows) > size
        return pb.ListEventsResponse(
            events=[event_message(row) for row in page],
            next_page_token=BY_EVENT.encode((int(page[-1]["id"]),), *query) if more else "",
        )


async def sweeping(
    store: WorkerStore,
    announcer: Announcer,
    settings: WorkersSettings,
    metrics: RegistryMetrics,
    stop: asyncio.Event,
) -> None:
    """Reap expired leases, place waiting sessions and rebalance, until ``stop``. Every replica runs
    it; the placement lock makes them take turns, so a replica's death costs nothing."""
    while not stop.is_set():
        try:
            with metrics.sweep_seconds.time():
                outcome = await store.sweep(now(), settings.rebalance_moves_per_sweep)
            await announcer.announce(outcome.changes)
            metrics.count(outcome)
            metrics.census(*await store.census())
        except Exception:  # a failed round (Postgres away) is retried next round
            log.exception("sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.sweep_interval_s)
