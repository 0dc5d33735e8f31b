"""The registry's truth in Postgres: workers and their leases, sessions and their holders.

Every change of who holds a session runs in one transaction that first takes one
transaction-scoped advisory lock, so placements are decided one at a time across every
replica (and a replica that dies mid-decision just rolls back). Each such change raises the
session's epoch, so whatever the previous holder still does carries an older epoch and is
refused. A method returns the :class:`Change` list it committed; the servicer tells the
workers concerned and refreshes the hot routes after the commit.

A session held by a live worker moves in two steps (a hand-over): the holder is told to stop
and the session waits ``moving``, reserved for its next worker; only once the holder's
heartbeat no longer lists it, or the holder is gone, is it assigned there under a new epoch.
The fencing epoch refuses a late write, but a message already sent to Twilio cannot be
refused: no two workers may act for one session at once, so the next one waits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wamesh_kit.errors import AlreadyExists, FailedPrecondition, NotFound
from wamesh_workers.schema import events, sessions, workers

# pg_advisory_xact_lock key of every placement decision ("wrkr").
PLACEMENT_LOCK = 0x77726B72

WorkerState = Literal["active", "draining", "lost", "gone"]
# Heartbeating workers; only active ones are given sessions.
LIVE = ("active", "draining")
Action = Literal["assigned", "revoked"]


@dataclass(frozen=True)
class WorkerRow:
    id: str
    instance_id: str
    kind: str
    endpoint: str
    capacity: int
    labels: dict[str, str]
    state: str
    load: float
    registered_at: datetime
    last_heartbeat_at: datetime | None
    lease_expires_at: datetime
    # Sessions it holds (moving away included) and sessions reserved for it: its capacity use.
    session_count: int = 0
    # Of those, sessions moving away from it, which no longer count toward its balance.
    moving_out: int = 0


@dataclass(frozen=True)
class SessionRow:
    id: str
    tenant_id: str
    kind: str
    required_labels: dict[str, str]
    state: str
    worker_id: str | None
    epoch: int
    assigned_at: datetime | None
    status: str = ""
    status_at: datetime | None = None
    moving_to: str | None = None
    waiting_since: datetime | None = None


@dataclass(frozen=True)
class Change:
    """A worker gained (``assigned``) or must stop (``revoked``) a session at an epoch."""

    action: Action
    worker_id: str
    endpoint: str
    session: SessionRow
    # For an assignment: how long the session waited for it (None: it did not wait).
    waited: timedelta | None = None


@dataclass
class Outcome:
    changes: list[Change] = field(default_factory=list)
    lost_workers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Registration:
    instance_id: str
    kind: str
    endpoint: str
    capacity: int
    labels: dict[str, str]


@dataclass(frozen=True)
class Beat:
    lease_expires_at: datetime
    release_session_ids: list[str]


def _worker(row: sa.RowMapping, count: int = 0, moving_out: int = 0) -> WorkerRow:
    return WorkerRow(
        id=row["id"],
        instance_id=row["instance_id"],
        kind=row["kind"],
        endpoint=row["endpoint"],
        capacity=row["capacity"],
        labels=dict(row["labels"]),
        state=row["state"],
        load=row["load"],
        registered_at=row["registered_at"],
        last_heartbeat_at=row["last_heartbeat_at"],
        lease_expires_at=row["lease_expires_at"],
        session_count=count,
        moving_out=moving_out,
    )


def _session(row: sa.RowMapping) -> SessionRow:
    return SessionRow(
        id=row["id"],
        tenant_id=row["tenant_id"],
        kind=row["kind"],
        required_labels=dict(row["required_labels"]),
        state=row["state"],
        worker_id=row["worker_id"],
        epoch=row["epoch"],
        assigned_at=row["assigned_at"],
        status=row["status"],
        status_at=row["status_at"],
        moving_to=row["moving_to"],
        waiting_since=row["waiting_since"],
    )


class WorkerStore:
    def __init__(self, engine: AsyncEngine, lease_ttl: timedelta, reap_after: datetime) -> None:
        """``reap_after``: no lease runs out before then (see :func:`first_reap`)."""
        self._engine = engine
        self._ttl = lease_ttl
        self._reap_after = reap_after

    def _expired(self, lease_expires_at: datetime, now: datetime) -> bool:
        return lease_expires_at <= now and now >= self._reap_after

    # -- workers ---------------------------------------------------------------------------

    async def register(self, spec: Registration, now: datetime) -> tuple[WorkerRow, Outcome]:
        """A new worker (or, for a retry of a registration whose answer was lost, the same)."""
        outcome = Outcome()
        async with self._engine.begin() as conn:
            await _lock(conn)
            holders = (
                await conn.execute(
                    sa.select(workers).where(
                        workers.c.instance_id == spec.instance_id, workers.c.state.in_(LIVE)
                    )
                )
            ).mappings()
            for holder in [_worker(row) for row in holders]:
                if holder.lease_expires_at > now:
                    if _is_retry(holder, spec):
                        return holder, outcome
                    raise AlreadyExists(
                        "is held by a live worker; wait for its lease to expire",
                        field="instance_id",
                    )
                await self._lose(conn, holder, "its instance id registered again", now, outcome)
            worker_id = "w-" + uuid.uuid4().hex[:16]
            row = (
                (
                    await conn.execute(
                        workers.insert()
                        .values(
                            id=worker_id,
                            instance_id=spec.instance_id,
                            kind=spec.kind,
                            endpoint=spec.endpoint,
                            capacity=spec.capacity,
                            labels=spec.labels,
                            state="active",
                            load=0.0,
                            registered_at=now,
                            last_heartbeat_at=None,
                            lease_expires_at=now + self._ttl,
                        )
                        .returning(*workers.c)
                    )
                )
                .mappings()
                .one()
            )
            await _event(conn, "worker_registered", now, worker_id=worker_id)
            await self._place_pending(conn, now, outcome)
        return _worker(row), outcome

    async def heartbeat(
        self, worker_id: str, load: float, held: Sequence[tuple[str, int]], now: datetime
    ) -> tuple[Beat | None, Outcome]:
        """The renewed lease and the sessions to stop; None if the lease is gone (the
        worker was lost now or before: it must stop everything and register again)."""
        outcome = Outcome()
        async with self._engine.begin() as conn:
            # The placement lock first, and only when this beat places something: taken after
            # the worker's row lock it could deadlock with a sweep that loses this worker.
            seen = await conn.scalar(
                sa.select(workers.c.lease_expires_at).where(
                    workers.c.id == worker_id, workers.c.state.in_(LIVE)
                )
            )
            stopped = await _stopped_handovers(conn, worker_id, held)
            if seen is not None and (self._expired(seen, now) or stopped):
                await _lock(conn)
            row = (
                (
                    await conn.execute(
                        sa.select(workers).where(workers.c.id == worker_id).with_for_update()
                    )
                )
                .mappings()
                .one_or_none()
            )
            if row is None or row["state"] not in LIVE:
                return None, outcome
            if self._expired(row["lease_expires_at"], now):
                if seen is None or not self._expired(seen, now):
                    await _lock(conn)
                await self._lose(conn, _worker(row), "its lease expired", now, outcome)
                return None, outcome
            expires = now + self._ttl
            await conn.execute(
                workers.update()
                .where(workers.c.id == worker_id)
                .values(load=load, last_heartbeat_at=now, lease_expires_at=expires)
            )
            if stopped:
                await self._finish_handovers(conn, worker_id, held, now, outcome)
            release = await _not_held(conn, worker_id, held)
        return Beat(expires, release), outcome

    async def deregister(self, worker_id: str, now: datetime) -> Outcome:
        outcome = Outcome()
        async with self._engine.begin() as conn:
            await _lock(conn)
            row = (
                (await conn.execute(sa.select(workers).where(workers.c.id == worker_id)))
                .mappings()
                .one_or_none()
            )
            if row is None or row["state"] != "active":
                return outcome
            await conn.execute(
                workers.update().where(workers.c.id == worker_id).values(state="gone")
            )
            await _event(conn, "worker_deregistered", now, worker_id=worker_id)
            await self._move_all_from(conn, _worker(row), "its worker deregistered", now, outcome)
        return outcome

    async def lose(self, worker_id: str, reason: str, now: datetime) -> Outcome:
        """Declare a live worker lost (its pod went): its sessions move at once."""
        outcome = Outcome()
        async with self._engine.begin() as conn:
            await _lock(conn)
            row = (
                (await conn.execute(sa.select(workers).where(workers.c.id == worker_id)))
                .mappings()
                .one_or_none()
            )
            if row is not None and row["state"] in LIVE:
                await self._lose(conn, _worker(row), reason, now, outcome)
        return outcome

    async def drain(self, worker_id: str, now: datetime) -> tuple[WorkerRow, Outcome]:
        """Give the worker nothing new and move its sessions where they fit."""
        outcome = Outcome()
        async with self._engine.begin() as conn:
            await _lock(conn)
            row = (
                (await conn.execute(sa.select(workers).where(workers.c.id == worker_id)))
                .mappings()
                .one_or_none()
            )
            if row is None:
                raise NotFound("no such worker", field="worker_id")
            if row["state"] not in LIVE:
                raise FailedPrecondition("is not live", field="worker_id")
            await conn.execute(
                workers.update().where(workers.c.id == worker_id).values(state="draining")
            )
            await _event(conn, "worker_drained", now, worker_id=worker_id)
            worker = replace(_worker(row), state="draining")
            await self._move_all_from(
                conn, worker, "its worker is draining", now, outcome, keep_unplaced=True
            )
        return worker, outcome

    async def active_worker_of_instance(self, instance_id: str) -> str | None:
        async with self._engine.connect() as conn:
            found: str | None = await conn.scalar(
                sa.select(workers.c.id).where(
                    workers.c.instance_id == instance_id, workers.c.state.in_(LIVE)
                )
            )
        return found

    async def sweep(self, now: datetime, rebalance_moves: int = 0) -> Outcome:
        """Lose every worker whose lease expired, place what waits, then make at most
        ``rebalance_moves`` moves toward even load (a worker that joined fills gradually)."""
        outcome = Outcome()
        async with self._engine.begin() as conn:
            await _lock(conn)
            expired = (
                await conn.execute(
                    sa.select(workers).where(
                        workers.c.state.in_(LIVE), workers.c.lease_expires_at <= now
                    )
                )
            ).mappings()
            for worker in [_worker(row) for row in expired]:
                if self._expired(worker.lease_expires_at, now):
                    await self._lose(conn, worker, "its lease expired", now, outcome)
            await self._place_pending(conn, now, outcome)
            if rebalance_moves > 0:
                await self._rebalance(conn, rebalance_moves, now, outcome)
        return outcome

    async def census(self) -> tuple[dict[str, int], dict[str, int]]:
        """How many workers and sessions are in each state."""
        async with self._engine.connect() as conn:
            by_worker_state = (
                await conn.execute(
                    sa.select(workers.c.state, sa.func.count()).group_by(workers.c.state)
                )
            ).all()
            by_session_state = (
                await conn.execute(
                    sa.select(sessions.c.state, sa.func.count()).group_by(sessions.c.state)
                )
            ).all()
        return (
            {state: int(count) for state, count in by_worker_state},
            {state: int(count) for state, count in by_session_state},
        )

    async def worker(self, worker_id: str) -> WorkerRow:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(workers).where(workers.c.id == worker_id)))
                .mappings()
                .one_or_none()
            )
            if row is None:
                raise NotFound("no such worker", field="worker_id")
            count = await conn.scalar(
                sa.select(sa.func.count()).where(sessions.c.worker_id == worker_id)
            )
        return _worker(row, int(count or 0))

    async def list_workers(
        self, limit: int, after: str | None, kind: str, state: str
    ) -> list[WorkerRow]:
        counts = (
            sa.select(sessions.c.worker_id, sa.func.count().label("n"))
            .group_by(sessions.c.worker_id)
            .subquery()
        )
        query = (
            sa.select(workers, sa.func.coalesce(counts.c.n, 0).label("session_count"))
            .outerjoin(counts, counts.c.worker_id == workers.c.id)
            .order_by(workers.c.id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(workers.c.id > after)
        if kind:
            query = query.where(workers.c.kind == kind)
        if state:
            query = query.where(workers.c.state == state)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_worker(row, int(row["session_count"])) for row in rows]

    # -- sessions --------------------------------------------------------------------------

    async def assign(
        self,
        session: SessionRow,
        worker_id: str,
        expected_epoch: int,
        now: datetime,
    ) -> tuple[SessionRow, Outcome]:
        """Create ``session`` if new; place it on ``worker_id`` (a move) or, while it waits,
        wherever fits best. Already placed as asked: unchanged."""
        outcome = Outcome()
        async with self._engine.begin() as conn:
            await _lock(conn)
            current = await _session_for_update(conn, session.id)
            if current is None:
                await conn.execute(
                    sessions.insert().values(
                        id=session.id,
                        tenant_id=session.tenant_id,
                        kind=session.kind,
                        required_labels=session.required_labels,
                        state="pending",
                        worker_id=None,
                        epoch=0,
                        assigned_at=None,
                        created_at=now,
                        waiting_since=now,
                    )
                )
                current = replace(
                    session, state="pending", worker_id=None, epoch=0, waiting_since=now
                )
            elif (current.tenant_id, current.kind) != (session.tenant_id, session.kind):
                raise FailedPrecondition(
                    f"exists for tenant {current.tenant_id!r}, kind {current.kind!r}",
                    field="session_id",
                )
            if expected_epoch and expected_epoch != current.epoch:
                raise FailedPrecondition(
                    f"is stale: the session is at epoch {current.epoch}", field="expected_epoch"
                )
            if worker_id:
                target = await _fitting_target(conn, current, worker_id)
                if current.state == "pending":
                    current = await self._move(
                        conn, current, target, "placed by request", now, outcome
                    )
                elif current.state == "moving" and current.moving_to != target.id:
                    await conn.execute(
                        sessions.update()
                        .where(sessions.c.id == current.id)
                        .values(moving_to=target.id)
                    )
                    current = replace(current, moving_to=target.id)
                elif current.state == "assigned" and current.worker_id != target.id:
                    current = await self._hand_over(
                        conn, current, target, "moved by request", now, outcome
                    )
            elif current.state == "pending":
                fits = await _candidates(conn)
                best = _best(fits, current)
                if best is not None:
                    current = await self._move(conn, current, best, "placed", now, outcome)
        return current, outcome

    async def release(self, session_id: str, expected_epoch: int, now: datetime) -> Outcome:
        outcome = Outcome()
        async with self._engine.begin() as conn:
            await _lock(conn)
            current = await _session_for_update(conn, session_id)
            if current is None:
                return outcome
            if expected_epoch and expected_epoch != current.epoch:
                raise FailedPrecondition(
                    f"is stale: the session is at epoch {current.epoch}", field="expected_epoch"
                )
            await self._revoke(conn, current, "released", now, outcome)
            await conn.execute(sessions.delete().where(sessions.c.id == session_id))
        return outcome

    async def session(self, session_id: str) -> SessionRow:
        async with self._engine.connect() as conn:
            row = (
                (await conn.execute(sa.select(sessions).where(sessions.c.id == session_id)))
                .mappings()
                .one_or_none()
            )
        if row is None:
            raise NotFound("no such session", field="session_id")
        return _session(row)

    async def route(self, session_id: str) -> tuple[SessionRow, str]:
        """The session and its holder's endpoint ('' while it waits)."""
        query = (
            sa.select(sessions, workers.c.endpoint)
            .outerjoin(workers, workers.c.id == sessions.c.worker_id)
            .where(sessions.c.id == session_id)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().one_or_none()
        if row is None:
            raise NotFound("no such session", field="session_id")
        return _session(row), row["endpoint"] or ""

    async def held_by(self, worker_id: str) -> list[SessionRow]:
        """The sessions the worker may act for (not those it was told to stop)."""
        async with self._engine.connect() as conn:
            return await _sessions(
                conn,
                sa.select(sessions).where(
                    sessions.c.worker_id == worker_id, sessions.c.state == "assigned"
                ),
            )

    async def list_sessions(
        self, limit: int, after: str | None, tenant_id: str, worker_id: str, kind: str
    ) -> list[SessionRow]:
        query = sa.select(sessions).order_by(sessions.c.id).limit(limit)
        if after is not None:
            query = query.where(sessions.c.id > after)
        if tenant_id:
            query = query.where(sessions.c.tenant_id == tenant_id)
        if worker_id:
            query = query.where(sessions.c.worker_id == worker_id)
        if kind:
            query = query.where(sessions.c.kind == kind)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_session(row) for row in rows]

    async def report_status(
        self,
        session_id: str,
        worker_id: str,
        epoch: int,
        status: str,
        detail: str,
        now: datetime,
    ) -> None:
        """Record the holder's report; FailedPrecondition unless it holds it at ``epoch``."""
        async with self._engine.begin() as conn:
            current = await _session_for_update(conn, session_id)
            if current is None:
                raise NotFound("no such session", field="session_id")
            if not holds(current, worker_id, epoch):
                raise FailedPrecondition(
                    f"is not the session's holder at epoch {epoch}", field="epoch"
                )
            await conn.execute(
                sessions.update()
                .where(sessions.c.id == session_id)
                .values(status=status, status_at=now)
            )
            await _event(
                conn,
                "session_status",
                now,
                worker_id=worker_id,
                session=current,
                detail=f"{status}: {detail}" if detail else status,
            )

    async def record_qr(self, session: SessionRow, now: datetime) -> None:
        async with self._engine.begin() as conn:
            await _event(
                conn, "qr_code_put", now, worker_id=session.worker_id or "", session=session
            )

    async def events_after(
        self, after: int, tenant_id: str, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Events after id ``after``, oldest first (for tenant_id's sessions only, if set)."""
        query = sa.select(events).where(events.c.id > after).order_by(events.c.id).limit(limit)
        if tenant_id:
            query = query.where(events.c.tenant_id == tenant_id)
        async with self._engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]

    async def last_event_id(self) -> int:
        async with self._engine.connect() as conn:
            return int(
                await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))) or 0
            )

    async def list_events(
        self, limit: int, before: int | None, worker_id: str, session_id: str, tenant_id: str
    ) -> list[dict[str, Any]]:
        query = sa.select(events).order_by(events.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(events.c.id < before)
        for column, value in (
            (events.c.worker_id, worker_id),
            (events.c.session_id, session_id),
            (events.c.tenant_id, tenant_id),
        ):
            if value:
                query = query.where(column == value)
        async with self._engine.connect() as conn:
            return [dict(row) for row in (await conn.execute(query)).mappings().all()]

    # -- placement (inside a locked transaction) -------------------------------------------

    async def _lose(
        self,
        conn: AsyncConnection,
        worker: WorkerRow,
        reason: str,
        now: datetime,
        outcome: Outcome,
    ) -> None:
        await conn.execute(workers.update().where(workers.c.id == worker.id).values(state="lost"))
        await _event(conn, "worker_lost", now, worker_id=worker.id, detail=reason)
        outcome.lost_workers.append(worker.id)
        await self._move_all_from(conn, worker, f"its worker was lost: {reason}", now, outcome)

    async def _move_all_from(
        self,
        conn: AsyncConnection,
        worker: WorkerRow,
        reason: str,
        now: datetime,
        outcome: Outcome,
        *,
        keep_unplaced: bool = False,
    ) -> None:
        """Move each session elsewhere; one that fits nowhere waits PENDING. With
        ``keep_unplaced`` (a drain: the worker still serves), each is handed over, and one that
        fits nowhere stays where it is; without it the worker has stopped (lost or gone)."""
        rows = await _sessions(
            conn, sa.select(sessions).where(sessions.c.worker_id == worker.id).with_for_update()
        )
        fits = await _candidates(conn)
        for held in rows:
            if not keep_unplaced:
                await self._finish(conn, held, fits, reason, now, outcome)
            elif held.state == "assigned":
                best = _best(fits, held)
                if best is not None:
                    await self._hand_over(conn, held, best, reason, now, outcome)

    async def _place_pending(self, conn: AsyncConnection, now: datetime, outcome: Outcome) -> None:
        rows = await _sessions(
            conn,
            sa.select(sessions)
            .where(sessions.c.state == "pending")
            .order_by(sessions.c.created_at)
            .with_for_update(),
        )
        if not rows:
            return
        fits = await _candidates(conn)
        for waiting in rows:
            best = _best(fits, waiting)
            if best is not None:
                await self._move(conn, waiting, best, "placed", now, outcome)

    async def _rebalance(
        self, conn: AsyncConnection, moves: int, now: datetime, outcome: Outcome
    ) -> None:
        """Move sessions from the fullest worker to the emptiest that fits them, one at a
        time, while a move lowers the highest load (sessions / capacity)."""
        candidates = await _candidates(conn)
        for _ in range(moves):
            move = await _best_move(conn, candidates)
            if move is None:
                return
            session, target = move
            await self._hand_over(conn, session, target, "rebalanced", now, outcome)
            source = candidates[session.worker_id or ""]
            candidates[source.id] = replace(source, moving_out=source.moving_out + 1)
            candidates[target.id] = replace(target, session_count=target.session_count + 1)

    async def _move(
        self,
        conn: AsyncConnection,
        current: SessionRow,
        target: WorkerRow,
        reason: str,
        now: datetime,
        outcome: Outcome,
    ) -> SessionRow:
        """Place ``current`` on ``target`` now: its holder, if any, has stopped or is gone."""
        await self._revoke(conn, current, reason, now, outcome)
        placed = replace(
            current,
            state="assigned",
            worker_id=target.id,
            epoch=current.epoch + 1,
            assigned_at=now,
            moving_to=None,
            waiting_since=None,
        )
        await conn.execute(
            sessions.update()
            .where(sessions.c.id == current.id)
            .values(
                state="assigned",
                worker_id=target.id,
                epoch=placed.epoch,
                assigned_at=now,
                moving_to=None,
                waiting_since=None,
            )
        )
        await _event(
            conn, "session_assigned", now, worker_id=target.id, session=placed, detail=reason
        )
        # A held session whose worker went waited from that moment on.
        since = current.waiting_since or (now if current.state == "assigned" else None)
        waited = now - since if since is not None else None
        outcome.changes.append(Change("assigned", target.id, target.endpoint, placed, waited))
        return placed

    async def _revoke(
        self,
        conn: AsyncConnection,
        current: SessionRow,
        reason: str,
        now: datetime,
        outcome: Outcome,
        *,
        to_pending: bool = False,
    ) -> None:
        """Tell the holder to stop (once: a moving session's holder was told already); with
        ``to_pending`` the session then waits for a worker."""
        if current.worker_id is None:
            return
        if current.state == "assigned":
            outcome.changes.append(Change("revoked", current.worker_id, "", current))
            await _event(
                conn,
                "session_revoked",
                now,
                worker_id=current.worker_id,
                session=current,
                detail=reason,
            )
        if to_pending:
            await conn.execute(
                sessions.update()
                .where(sessions.c.id == current.id)
                .values(
                    state="pending",
                    worker_id=None,
                    epoch=current.epoch + 1,
                    assigned_at=None,
                    moving_to=None,
                    waiting_since=current.waiting_since or now,
                )
            )

    async def _hand_over(
        self,
        conn: AsyncConnection,
        current: SessionRow,
        target: WorkerRow,
        reason: str,
        now: datetime,
        outcome: Outcome,
    ) -> SessionRow:
        """Tell a live holder to stop and reserve the session for ``target``; it moves on
        once the holder has stopped (:meth:`_finish_handovers`) or is gone."""
        await self._revoke(conn, current, reason, now, outcome)
        await conn.execute(
            sessions.update()
            .where(sessions.c.id == current.id)
            .values(state="moving", moving_to=target.id, waiting_since=now)
        )
        return replace(current, state="moving", moving_to=target.id, waiting_since=now)

    async def _finish_handovers(
        self,
        conn: AsyncConnection,
        worker_id: str,
        held: Sequence[tuple[str, int]],
        now: datetime,
        outcome: Outcome,
    ) -> None:
        """Move on the sessions moving away from ``worker_id`` that it no longer lists."""
        listed = {session_id for session_id, _ in held}
        rows = await _sessions(
            conn,
            sa.select(sessions)
            .where(sessions.c.worker_id == worker_id, sessions.c.state == "moving")
            .with_for_update(),
        )
        stopped = [s for s in rows if s.id not in listed]
        if not stopped:
            return
        candidates = await _candidates(conn)
        for session in stopped:
            await self._finish(conn, session, candidates, "handed over", now, outcome)

    async def _finish(
        self,
        conn: AsyncConnection,
        current: SessionRow,
        candidates: dict[str, WorkerRow],
        reason: str,
        now: datetime,
        outcome: Outcome,
    ) -> None:
        """Place a session whose holder has stopped or is gone: on the worker it was reserved
        for, else wherever fits best, else PENDING."""
        target = candidates.get(current.moving_to or "")
        if target is not None and fits(target, current):
            # The reservation becomes a holding: the source gives its count back.
            _count(candidates, current.worker_id, -1)
        else:
            target = _best(candidates, current)
        if target is None:
            await self._revoke(conn, current, reason, now, outcome, to_pending=True)
        else:
            await self._move(conn, current, target, reason, now, outcome)


async def _lock(conn: AsyncConnection) -> None:
    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PLACEMENT_LOCK)))


def _is_retry(holder: WorkerRow, spec: Registration) -> bool:
    same = (holder.kind, holder.endpoint, holder.capacity, holder.labels) == (
        spec.kind,
        spec.endpoint,
        spec.capacity,
        spec.labels,
    )
    return same and holder.last_heartbeat_at is None


def first_reap(started_at: datetime, lease_ttl: timedelta, grace: timedelta) -> datetime:
    """When a registry replica started at ``started_at`` may first lose a worker for its
    lease: once every worker could have renewed with it up (``grace``: their channels
    reconnect after a back-off, then heartbeat). A registry that was down (every replica
    restarting) would otherwise lose every worker at once. Safe: a worker that could not
    renew has stopped acting on its own, and gets its sessions back, at the same epochs,
    when it does."""
    return started_at + lease_ttl + grace


def holds(session: SessionRow, worker_id: str, epoch: int) -> bool:
    """Whether ``worker_id`` may act for ``session`` at ``epoch`` (not once told to stop)."""
    return session.state == "assigned" and (session.worker_id, session.epoch) == (
        worker_id,
        epoch,
    )


async def _not_held(
    conn: AsyncConnection, worker_id: str, held: Sequence[tuple[str, int]]
) -> list[str]:
    """The listed sessions the worker must stop: moved, moving away, or at another epoch."""
    if not held:
        return []
    ids = [session_id for session_id, _ in held]
    rows = (
        await conn.execute(
            sa.select(
                sessions.c.id, sessions.c.worker_id, sessions.c.epoch, sessions.c.state
            ).where(sessions.c.id.in_(ids))
        )
    ).all()
    truth = {row.id: (row.worker_id, row.epoch, row.state) for row in rows}
    return [
        session_id
        for session_id, epoch in held
        if truth.get(session_id) != (worker_id, epoch, "assigned")
    ]


async def _stopped_handovers(
    conn: AsyncConnection, worker_id: str, held: Sequence[tuple[str, int]]
) -> bool:
    """Whether a session moving away from the worker is missing from what it lists."""
    moving = (
        await conn.scalars(
            sa.select(sessions.c.id).where(
                sessions.c.worker_id == worker_id, sessions.c.state == "moving"
            )
        )
    ).all()
    listed = {session_id for session_id, _ in held}
    return any(session_id not in listed for session_id in moving)


async def _sessions(conn: AsyncConnection, query: sa.Select[Any]) -> list[SessionRow]:
    """The sessions ``query`` selects, by id (after any order it has): the same order on
    every replica, so row locks are taken in one order."""
    rows = (await conn.execute(query.order_by(sessions.c.id))).mappings().all()
    return [_session(row) for row in rows]


async def _session_for_update(conn: AsyncConnection, session_id: str) -> SessionRow | None:
    row = (
        (
            await conn.execute(
                sa.select(sessions).where(sessions.c.id == session_id).with_for_update()
            )
        )
        .mappings()
        .one_or_none()
    )
    return None if row is None else _session(row)


async def _candidates(conn: AsyncConnection) -> dict[str, WorkerRow]:
    """Every active worker with the sessions it holds or has reserved, and how many of them
    move away: the state placement works on."""
    held = (
        sa.select(
            sessions.c.worker_id.label("worker_id"),
            sa.func.count().label("n"),
            sa.func.count().filter(sessions.c.state == "moving").label("out"),
        )
        .where(sessions.c.worker_id.is_not(None))
        .group_by(sessions.c.worker_id)
        .subquery()
    )
    reserved = (
        sa.select(sessions.c.moving_to.label("worker_id"), sa.func.count().label("n"))
        .where(sessions.c.moving_to.is_not(None))
        .group_by(sessions.c.moving_to)
        .subquery()
    )
    count = sa.func.coalesce(held.c.n, 0) + sa.func.coalesce(reserved.c.n, 0)
    rows = (
        (
            await conn.execute(
                sa.select(
                    workers,
                    count.label("session_count"),
                    sa.func.coalesce(held.c.out, 0).label("moving_out"),
                )
                .outerjoin(held, held.c.worker_id == workers.c.id)
                .outerjoin(reserved, reserved.c.worker_id == workers.c.id)
                .where(workers.c.state == "active")
            )
        )
        .mappings()
        .all()
    )
    return {
        row["id"]: _worker(row, int(row["session_count"]), int(row["moving_out"])) for row in rows
    }


def _count(candidates: dict[str, WorkerRow], worker_id: str | None, change: int) -> None:
    worker = candidates.get(worker_id or "")
    if worker is not None:
        candidates[worker.id] = replace(worker, session_count=worker.session_count + change)


def fits(worker: WorkerRow, session: SessionRow) -> bool:
    return (
        worker.state == "active"
        and worker.kind == session.kind
        and all(worker.labels.get(k) == v for k, v in session.required_labels.items())
    )


def _best(candidates: dict[str, WorkerRow], session: SessionRow) -> WorkerRow | None:
    """The fitting worker with the most free capacity (ties: the smallest id), counted as
    holding one more; None when none fits."""
    free = [
        w
        for w in candidates.values()
        if w.id != session.worker_id and fits(w, session) and w.session_count < w.capacity
    ]
    if not free:
        return None
    best = min(free, key=lambda w: (-(w.capacity - w.session_count), w.id))
    _count(candidates, best.id, +1)
    _count(candidates, session.worker_id, -1)
    return best


def _ratio(worker: WorkerRow, extra: int = 0) -> float:
    """Its share of capacity once the sessions moving away from it have gone."""
    return (worker.session_count - worker.moving_out + extra) / worker.capacity


async def _best_move(
    conn: AsyncConnection, candidates: dict[str, WorkerRow]
) -> tuple[SessionRow, WorkerRow] | None:
    for source in sorted(candidates.values(), key=lambda w: (-_ratio(w), w.id)):
        if source.session_count - source.moving_out == 0:
            return None
        rows = await _sessions(
            conn,
            sa.select(sessions)
            .where(sessions.c.worker_id == source.id, sessions.c.state == "assigned")
            .limit(50),
        )
        for session in rows:
            targets = [
                w
                for w in candidates.values()
                if w.id != source.id
                and fits(w, session)
                and w.session_count < w.capacity
                and _ratio(w, 1) < _ratio(source)
            ]
            if targets:
                return session, min(targets, key=lambda w: (_ratio(w), w.id))
    return None


async def _fitting_target(conn: AsyncConnection, session: SessionRow, worker_id: str) -> WorkerRow:
    candidates = await _candidates(conn)
    target = candidates.get(worker_id)
    if target is None:
        exists = await conn.scalar(sa.select(workers.c.id).where(workers.c.id == worker_id))
        if exists is None:
            raise NotFound("no such worker", field="worker_id")
        raise FailedPrecondition("is not live", field="worker_id")
    if not fits(target, session):
        raise FailedPrecondition(
            "is not of the session's kind or lacks its required labels", field="worker_id"
        )
    if target.id not in (session.worker_id, session.moving_to) and (
        target.session_count >= target.capacity
    ):
        raise FailedPrecondition("is at capacity", field="worker_id")
    return target


async def _event(
    conn: AsyncConnection,
    kind: str,
    now: datetime,
    *,
    worker_id: str,
    session: SessionRow | None = None,
    detail: str = "",
) -> None:
    await conn.execute(
        events.insert().values(
            kind=kind,
            worker_id=worker_id,
            session_id=session.id if session else "",
            tenant_id=session.tenant_id if session else "",
            epoch=session.epoch if session else 0,
            detail=detail,
            occurred_at=now,
        )
    )
