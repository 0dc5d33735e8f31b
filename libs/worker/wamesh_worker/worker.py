"""A session worker: holds the sessions the workers registry places on it, and acts for one
only while it may.

The registry gives each session to one worker at a time under a fencing epoch. This side of
the bargain:

- It acts for a session only while :meth:`SessionWorker.epoch_of` answers, which is only
  while the session is held and the worker's lease is surely alive: the lease is counted from
  when the last renewing heartbeat was *sent*, less a margin, so it ends here before it can
  end at the registry. A worker frozen or cut off past that stops acting on its own, before
  the registry gives its sessions to anyone else.
- Told to stop a session (a revoke on the stream, or in a heartbeat's answer), it stops at
  once, runs ``on_revoked`` to the end, and only then sends a heartbeat that no longer lists
  the session: that heartbeat is what lets the registry hand the session to its next worker.
- Its lease gone (NOT_FOUND), it stops everything and registers again; its stream, re-read
  from a fresh snapshot, gives back what it still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from wamesh.workers.v1 import workers_pb2 as pb
from wamesh.workers.v1 import workers_pb2_grpc
from wamesh_kit.rpc.client import make_channel

log = logging.getLogger(__name__)

OnAssigned = Callable[[pb.Session], Awaitable[None]]
OnRevoked = Callable[[str], Awaitable[None]]
# A watch stream is re-opened this often: a fresh snapshot also heals anything missed.
WATCH_RENEW_S = 300.0
RETRY_S = 0.5


async def _nothing(_: Any) -> None:
    return None


@dataclass(frozen=True)
class WorkerSpec:
    """What the worker tells the registry about itself."""

    instance_id: str
    kind: str
    endpoint: str
    capacity: int
    labels: Mapping[str, str] = field(default_factory=dict)


class SessionWorker:
    """Registers ``spec`` with the registry at ``target`` and keeps it registered until
    :meth:`close`; ``on_assigned`` and ``on_revoked`` start and stop a session's work."""

    def __init__(
        self,
        target: str,
        token: str,
        spec: WorkerSpec,
        *,
        on_assigned: OnAssigned = _nothing,
        on_revoked: OnRevoked = _nothing,
        load: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spec = spec
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._load = load
        self._clock = clock
        self._channel = make_channel(target, token=token)
        self._stub: Any = workers_pb2_grpc.WorkerRegistryStub(self._channel)
        self.worker_id = ""
        self.instance_id = spec.instance_id
        self._held: dict[str, int] = {}
        # Being stopped: still listed in heartbeats until on_revoked has returned.
        self._stopping: dict[str, int] = {}
        # Revoked at this epoch: an assignment at or below it, arriving late, is stale.
        self._revoked: dict[str, int] = {}
        self._valid_until = 0.0
        self._interval_s = 1.0
        self._ttl_s = 2.0
        self._beat_now = asyncio.Event()
        self._registered = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._watch: asyncio.Task[None] | None = None
        self._callbacks = asyncio.Lock()
        self._stops: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- what the embedding process asks ------------------------------------------------------

    def epoch_of(self, session_id: str) -> int | None:
        """The epoch to stamp an action for ``session_id`` with, or None: do not act."""
        if self._clock() >= self._valid_until:
            return None
        return self._held.get(session_id)

    def held(self) -> dict[str, int]:
        """Sessions held now with their epochs (empty while the lease is in doubt)."""
        return dict(self._held) if self._clock() < self._valid_until else {}

    async def started(self) -> None:
        """Wait until registered."""
        await self._registered.wait()

    async def report_status(
        self, session_id: str, status: pb.SessionStatus.ValueType, detail: str = ""
    ) -> bool:
        """Report a held session's connection status; False if it is not held."""
        epoch = self.epoch_of(session_id)
        if epoch is None:
            return False
        await self._stub.ReportSessionStatus(
            pb.ReportSessionStatusRequest(
                session_id=session_id,
                worker_id=self.worker_id,
                epoch=epoch,
                status=status,
                detail=detail,
            )
        )
        return True

    async def put_qr_code(self, session_id: str, payload: str) -> bool:
        """Publish a held session's login QR code; False if it is not held."""
        epoch = self.epoch_of(session_id)
        if epoch is None:
            return False
        await self._stub.PutQrCode(
            pb.PutQrCodeRequest(
                session_id=session_id, worker_id=self.worker_id, epoch=epoch, qr_payload=payload
            )
        )
        return True

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register and keep the lease; returns once registered."""
        await self._register()
        self._tasks.append(asyncio.create_task(self._beating(), name="worker-heartbeat"))

    async def close(self, *, deregister: bool = True) -> None:
        """Stop every session, then (gracefully) leave the registry so they move at once."""
        self._closing = True
        tasks = [*self._tasks, *([self._watch] if self._watch else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._stop_all("the worker is closing")
        # Deregistering moves every session at once: only after each has really stopped.
        await asyncio.gather(*self._stops, return_exceptions=True)
        if deregister and self.worker_id:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await self._stub.DeregisterWorker(
                    pb.DeregisterWorkerRequest(worker_id=self.worker_id)
                )
        await self._channel.close(None)

    async def __aenter__(self) -> SessionWorker:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- the lease ---------------------------------------------------------------------------

    async def _register(self) -> None:
        request = pb.RegisterWorkerRequest(
            instance_id=self._spec.instance_id,
            kind=self._spec.kind,
            endpoint=self._spec.endpoint,
            capacity=self._spec.capacity,
            labels=dict(self._spec.labels),
        )
        while True:
            sent = self._clock()
            try:
                answer = await self._stub.RegisterWorker(request)
                break
            except grpc.aio.AioRpcError as error:
                # ALREADY_EXISTS: our previous process's lease has not run out yet.
                log.warning("registering failed (%s); retrying", error.code().name)
                await asyncio.sleep(RETRY_S)
        self.worker_id = answer.worker.id
        self._interval_s = answer.heartbeat_interval.ToTimedelta().total_seconds()
        self._ttl_s = answer.lease_ttl.ToTimedelta().total_seconds()
        self._renewed(sent)
        self._registered.set()
        self._restart_watch()
        log.info("registered as worker %s", self.worker_id)

    def _renewed(self, sent: float) -> None:
        # A fifth of the lease covers clock differences between registry replicas.
        self._valid_until = max(self._valid_until, sent + self._ttl_s * 0.8)

    async def _beating(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_now.wait(), self._interval_s)
            self._beat_now.clear()
            await self._fence_if_expired()
            await self._beat()

    async def _beat(self) -> None:
        listed = {**self._held, **self._stopping}
        sent = self._clock()
        try:
            answer = await self._stub.Heartbeat(
                pb.HeartbeatRequest(
                    worker_id=self.worker_id,
                    load=self._load(),
                    sessions=[pb.HeldSession(session_id=s, epoch=e) for s, e in listed.items()],
                ),
                timeout=max(self._interval_s, 0.5),
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                log.warning("worker %s lost its lease; registering again", self.worker_id)
                self._stop_all("the lease was lost")
                self._valid_until = 0.0
                await self._register()
            else:
                log.warning("heartbeat failed: %s", error.code().name)
            return
        for session_id in answer.release_session_ids:
            self._stop(session_id, self._held.get(session_id, 0), "the registry said so")
        was_fenced = self._clock() >= self._valid_until
        self._renewed(sent)
        if was_fenced and self._clock() < self._valid_until:
            self._restart_watch()  # what we dropped while in doubt comes back from a snapshot

    async def _fence_if_expired(self) -> None:
        if self._held and self._clock() >= self._valid_until:
            log.warning("worker %s: lease in doubt, stopping every session", self.worker_id)
            if self._watch is not None:
                self._watch.cancel()
            self._stop_all("the lease is in doubt")

    # -- assignments -------------------------------------------------------------------------

    def _restart_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        self._watch = asyncio.create_task(self._watching(), name="worker-watch")

    async def _watching(self) -> None:
        while not self._closing:
            try:
                await self._watch_once()
            except grpc.aio.AioRpcError as error:
                # A cancelled stream may end as CANCELLED rather than raise CancelledError.
                if error.code() not in (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED,
                ):
                    log.warning("assignment stream ended: %s", error.code().name)
                    await asyncio.sleep(RETRY_S)

    async def _watch_once(self) -> None:
        stream = self._stub.WatchAssignments(
            pb.WatchAssignmentsRequest(worker_id=self.worker_id), timeout=WATCH_RENEW_S
        )
        snapshot: dict[str, pb.Session] = {}
        synced = False
        async for change in stream:
            if not synced:
                if change.action == pb.ASSIGNMENT_ACTION_SYNCED:
                    synced = True
                    await self._reconcile(snapshot)
                else:
                    snapshot[change.session.id] = change.session
            elif change.action == pb.ASSIGNMENT_ACTION_ASSIGNED:
                await self._hold(change.session)
            elif change.action == pb.ASSIGNMENT_ACTION_REVOKED:
                self._stop(change.session.id, change.session.epoch, "revoked")

    async def _reconcile(self, snapshot: dict[str, pb.Session]) -> None:
        """The snapshot is the truth: stop what it lacks, hold what it has."""
        for session_id in [s for s in self._held if s not in snapshot]:
            self._stop(session_id, self._held[session_id], "not in the snapshot")
        self._revoked.clear()
        for session in snapshot.values():
            await self._hold(session)

    # The maps change in the synchronous part of each method, so epoch_of sees a change at
    # once; the callbacks run one at a time, in the order the changes came (a FIFO lock).

    async def _hold(self, session: pb.Session) -> None:
        known = max(self._held.get(session.id, 0), self._revoked.get(session.id, 0))
        if session.epoch <= known or self._clock() >= self._valid_until:
            return  # stale; or the lease is in doubt, and the next snapshot brings it back
        self._held[session.id] = session.epoch
        log.info("holding session %s at epoch %d", session.id, session.epoch)
        async with self._callbacks:
            await self._on_assigned(session)

    def _stop(self, session_id: str, epoch: int, why: str) -> None:
        """Stop acting for the session now; ``on_revoked`` runs in a task of its own, so
        neither the heartbeats nor the stream wait on it (a heartbeat loop that did could
        outlive its own lease while sessions finish their work)."""
        self._revoked[session_id] = max(self._revoked.get(session_id, 0), epoch)
        held = self._held.get(session_id)
        if held is None or held > epoch:
            return
        del self._held[session_id]
        self._stopping[session_id] = held
        log.info("stopping session %s at epoch %d: %s", session_id, held, why)
        task = asyncio.create_task(self._finish_stop(session_id, held))
        self._stops.add(task)
        task.add_done_callback(self._stops.discard)

    async def _finish_stop(self, session_id: str, held: int) -> None:
        try:
            async with self._callbacks:
                await self._on_revoked(session_id)
        except Exception:
            log.exception("on_revoked failed for session %s", session_id)
        finally:
            if self._stopping.get(session_id) == held:
                del self._stopping[session_id]
            self._beat_now.set()  # the heartbeat that no longer lists it hands it over

    def _stop_all(self, why: str) -> None:
        for session_id, epoch in list(self._held.items()):
            self._stop(session_id, epoch, why)
