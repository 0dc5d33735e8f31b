"""The dispatcher's truth in Postgres: jobs, attempts, and who may send for each sender.

A job is committed before anything else knows of it, and every change of its state after
that is stamped with the epoch the sending replica holds the sender at (the workers
registry's fencing epoch): a replica that lost the sender, frozen or cut off, has its next
change refused here (:class:`Fenced`) and stops. A recipient's jobs are started strictly in
enqueue order: starting one is refused while an older one of the same recipient is still
to be sent, whatever the Redis streams delivered first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wamesh_dispatcher.schema import UNFINISHED, attempts, jobs, senders
from wamesh_kit.errors import NotFound

STARTABLE = ("queued", "retrying")


class Fenced(Exception):
    """A newer replica holds the sender: this one must stop sending for it."""


@dataclass(frozen=True)
class Template:
    content_sid: str
    variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NewJob:
    tenant_id: str
    idempotency_key: str
    sender_number: str
    recipient_number: str
    body: str = ""
    media: tuple[tuple[str, str], ...] = ()  # (url, content_type)
    template: Template | None = None
    fallback_template: Template | None = None
    priority: str = "interactive"
    not_before: datetime | None = None
    despite_opt_out: bool = False


@dataclass(frozen=True)
class JobRow:
    id: str
    seq: int
    tenant_id: str
    idempotency_key: str
    sender_number: str
    recipient_number: str
    body: str
    media: tuple[tuple[str, str], ...]
    template: Template | None
    fallback_template: Template | None
    priority: str
    not_before: datetime | None
    state: str
    attempts: int
    last_error_code: int
    last_error_message: str
    provider_sid: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    dead_at: datetime | None
    despite_opt_out: bool = False


@dataclass(frozen=True)
class AttemptRow:
    number: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    error_code: int
    error_message: str
    provider_sid: str | None


@dataclass(frozen=True)
class Finish:
    """How an attempt ended and where that leaves its job."""

    outcome: str
    state: str
    started_at: datetime
    error_code: int = 0
    error_message: str = ""
    provider_sid: str | None = None
    next_attempt_at: datetime | None = None
    # A closed 24-hour window: the job goes on as its fallback template.
    use_fallback: bool = False
    # The attempt does not count against the job's (its sender was paused, not the job).
    refund: bool = False


@dataclass(frozen=True)
class SenderStats:
    tenant_id: str
    sender_number: str
    counts: dict[str, int]
    oldest_pending_at: datetime | None


def _template(raw: dict[str, Any] | None) -> Template | None:
    return None if raw is None else Template(raw["content_sid"], dict(raw["variables"]))


def _raw_template(template: Template | None) -> dict[str, Any] | None:
    return None if template is None else asdict(template)


def _job(row: sa.RowMapping) -> JobRow:
    return JobRow(
        id=row["id"],
        seq=row["seq"],
        tenant_id=row["tenant_id"],
        idempotency_key=row["idempotency_key"],
        sender_number=row["sender_number"],
        recipient_number=row["recipient_number"],
        body=row["body"],
        media=tuple((m["url"], m["content_type"]) for m in row["media"]),
        template=_template(row["template"]),
        fallback_template=_template(row["fallback_template"]),
        priority=row["priority"],
        not_before=row["not_before"],
        state=row["state"],
        attempts=row["attempts"],
        last_error_code=row["last_error_code"],
        last_error_message=row["last_error_message"],
        provider_sid=row["provider_sid"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sent_at=row["sent_at"],
        dead_at=row["dead_at"],
        despite_opt_out=row["despite_opt_out"],
    )


def _values(job: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "id": "job_" + uuid.uuid4().hex,
        "tenant_id": job.tenant_id,
        "idempotency_key": job.idempotency_key,
        "sender_number": job.sender_number,
        "recipient_number": job.recipient_number,
        "body": job.body,
        "media": [{"url": url, "content_type": kind} for url, kind in job.media],
        "template": _raw_template(job.template),
        "fallback_template": _raw_template(job.fallback_template),
        "priority": job.priority,
        "not_before": job.not_before,
        "despite_opt_out": job.despite_opt_out,
        "state": "queued",
        "attempts": 0,
        "last_error_code": 0,
        "last_error_message": "",
        "created_at": now,
        "updated_at": now,
    }


# The sending path's two statements, one per batch of a sender's jobs. Fixed text rather
# than statements built per call: building and compiling a Core statement cost more than
# running it, and asyncpg prepares each text once per connection.
_UNFINISHED_SQL = ", ".join(f"'{state}'" for state in UNFINISHED)
_SENDER_HELD = """
    EXISTS (SELECT FROM senders WHERE senders.tenant_id = :tenant_id
            AND senders.sender_number = :sender_number
            AND senders.epoch = CAST(:epoch AS bigint))"""

_BEGIN = sa.text(
    f"""
    UPDATE jobs SET state = 'sending', attempts = jobs.attempts + 1,
        updated_at = CAST(:now AS timestamptz)
    WHERE jobs.id = ANY(CAST(:ids AS text[]))
        AND jobs.tenant_id = :tenant_id AND jobs.sender_number = :sender_number
        AND jobs.state IN ({_UNFINISHED_SQL})
        AND {_SENDER_HELD}
        AND NOT EXISTS (
            SELECT FROM jobs AS older
            WHERE older.tenant_id = jobs.tenant_id
                AND older.sender_number = jobs.sender_number
                AND older.recipient_number = jobs.recipient_number
                AND older.state IN ({_UNFINISHED_SQL})
                AND older.seq < jobs.seq)
    RETURNING jobs.*
    """
)

# The jobs move on and their attempts are recorded in one statement: a job's attempt row
# exists exactly when its change was made. Attempts are numbered by history, not by the
# job's count: a refunded or dead-letter-retried job keeps counting up.
_FINISH = sa.text(
    f"""
    WITH done AS (
        SELECT * FROM unnest(
            CAST(:ids AS text[]), CAST(:states AS text[]), CAST(:outcomes AS text[]),
            CAST(:started AS timestamptz[]), CAST(:codes AS integer[]),
            CAST(:messages AS text[]), CAST(:sids AS text[]),
            CAST(:next_at AS timestamptz[]), CAST(:fallback AS boolean[]),
            CAST(:refund AS boolean[])
        ) AS done (id, state, outcome, started_at, error_code, error_message,
                   provider_sid, next_attempt_at, use_fallback, refund)
    ), moved AS (
        UPDATE jobs SET
            state = done.state,
            updated_at = CAST(:now AS timestamptz),
            last_error_code = done.error_code,
            last_error_message = done.error_message,
            next_attempt_at = done.next_attempt_at,
            provider_sid = coalesce(done.provider_sid, jobs.provider_sid),
            sent_at = CASE WHEN done.state = 'sent'
                THEN CAST(:now AS timestamptz) ELSE jobs.sent_at END,
            dead_at = CASE WHEN done.state = 'dead'
                THEN CAST(:now AS timestamptz) ELSE jobs.dead_at END,
            template = CASE WHEN done.use_fallback AND jobs.fallback_template IS NOT NULL
                THEN jobs.fallback_template ELSE jobs.template END,
            body = CASE WHEN done.use_fallback AND jobs.fallback_template IS NOT NULL
                THEN '' ELSE jobs.body END,
            media = CASE WHEN done.use_fallback AND jobs.fallback_template IS NOT NULL
                THEN CAST('[]' AS jsonb) ELSE jobs.media END,
            attempts = jobs.attempts - CASE WHEN done.refund THEN 1 ELSE 0 END
        FROM done
        WHERE jobs.id = done.id AND jobs.state = 'sending'
            AND jobs.tenant_id = :tenant_id AND jobs.sender_number = :sender_number
            AND {_SENDER_HELD}
        RETURNING jobs.id
    )
    INSERT INTO attempts (job_id, number, started_at, finished_at, outcome, error_code,
                          error_message, provider_sid, epoch)
    SELECT done.id,
        (SELECT coalesce(max(a.number), 0) + 1 FROM attempts AS a WHERE a.job_id = done.id),
        done.started_at, CAST(:now AS timestamptz), done.outcome, done.error_code,
        done.error_message, done.provider_sid, CAST(:epoch AS bigint)
    FROM done JOIN moved ON moved.id = done.id
    RETURNING attempts.job_id
    """
)


def _holds(tenant_id: str, sender_number: str, epoch: int) -> sa.Exists:
    return sa.exists().where(
        senders.c.tenant_id == tenant_id,
        senders.c.sender_number == sender_number,
        senders.c.epoch == epoch,
    )


class JobStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # For the sending path's single statements: each commits on its own, without the
        # BEGIN and COMMIT round trips a transaction adds (the pool is shared).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    # -- intake ----------------------------------------------------------------------------

    async def enqueue(self, batch: Sequence[NewJob], now: datetime) -> list[tuple[JobRow, bool]]:
        """Record every job of ``batch`` in one transaction; a known idempotency key gives
        the existing job back (True: it already existed) and records nothing new."""
        async with self._engine.begin() as conn:
            inserted = (
                (
                    await conn.execute(
                        postgresql.insert(jobs)
                        .values([_values(job, now) for job in batch])
                        .on_conflict_do_nothing(constraint="jobs_tenant_id_idempotency_key")
                        .returning(*jobs.c)
                    )
                )
                .mappings()
                .all()
            )
            made = {(row["tenant_id"], row["idempotency_key"]): _job(row) for row in inserted}
            known = await _by_keys(
                conn, [(j.tenant_id, j.idempotency_key) for j in batch if _key(j) not in made]
            )
        found: list[tuple[JobRow, bool]] = []
        first_in_batch: set[tuple[str, str]] = set()
        for job in batch:
            key = _key(job)
            if key in made and key not in first_in_batch:
                first_in_batch.add(key)
                found.append((made[key], False))
            else:
                found.append((made.get(key) or known[key], True))
        return found

    async def job(
        self, tenant_id: str, *, job_id: str = "", idempotency_key: str = ""
    ) -> tuple[JobRow, list[AttemptRow]]:
        """A job and its attempts, oldest first; NotFound (of ``job_id`` or
        ``idempotency_key``) for none of this tenant's."""
        query = sa.select(jobs).where(jobs.c.tenant_id == tenant_id)
        query = (
            query.where(jobs.c.id == job_id)
            if job_id
            else query.where(jobs.c.idempotency_key == idempotency_key)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().one_or_none()
            if row is None:
                raise NotFound(
                    "no such job for this tenant", field="job_id" if job_id else "idempotency_key"
                )
            history = (
                (
                    await conn.execute(
                        sa.select(attempts)
                        .where(attempts.c.job_id == row["id"])
                        .order_by(attempts.c.number)
                    )
                )
                .mappings()
                .all()
            )
        return _job(row), [
            AttemptRow(
                number=a["number"],
                started_at=a["started_at"],
                finished_at=a["finished_at"],
                outcome=a["outcome"],
                error_code=a["error_code"],
                error_message=a["error_message"],
                provider_sid=a["provider_sid"],
            )
            for a in history
        ]

    # -- sending (the replica holding the sender) ------------------------------------------

    async def claim(self, tenant_id: str, sender_number: str, epoch: int, now: datetime) -> None:
        """Take the sender at ``epoch``; Fenced if a newer epoch already holds it."""
        async with self._engine.begin() as conn:
            stmt = postgresql.insert(senders).values(
                tenant_id=tenant_id, sender_number=sender_number, epoch=epoch, claimed_at=now
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[senders.c.tenant_id, senders.c.sender_number],
                set_={"epoch": epoch, "claimed_at": now},
                where=senders.c.epoch <= epoch,
            )
            claimed = (await conn.execute(stmt.returning(senders.c.epoch))).first()
        if claimed is None:
            raise Fenced(f"{tenant_id}/{sender_number} is held at a newer epoch than {epoch}")

    async def unfinished(self, tenant_id: str, sender_number: str) -> list[JobRow]:
        """The sender's jobs still to be sent, in enqueue order."""
        async with self._engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(jobs)
                        .where(
                            jobs.c.tenant_id == tenant_id,
                            jobs.c.sender_number == sender_number,
                            jobs.c.state.in_(UNFINISHED),
                        )
                        .order_by(jobs.c.seq)
                    )
                )
                .mappings()
                .all()
            )
        return [_job(row) for row in rows]

    async def unfinished_ids(self, tenant_id: str, sender_number: str) -> list[str]:
        """The ids of the sender's jobs still to be sent, in enqueue order: what a runner
        compares with what it knows, without reading a whole backlog again."""
        async with self._engine.connect() as conn:
            return list(
                (
                    await conn.execute(
                        sa.select(jobs.c.id)
                        .where(
                            jobs.c.tenant_id == tenant_id,
                            jobs.c.sender_number == sender_number,
                            jobs.c.state.in_(UNFINISHED),
                        )
                        .order_by(jobs.c.seq)
                    )
                ).scalars()
            )

    async def by_ids(self, job_ids: Sequence[str]) -> list[JobRow]:
        """The jobs of ``job_ids`` still to be sent, in enqueue order."""
        async with self._engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        sa.select(jobs)
                        .where(jobs.c.id.in_(list(job_ids)), jobs.c.state.in_(UNFINISHED))
                        .order_by(jobs.c.seq)
                    )
                )
                .mappings()
                .all()
            )
        return [_job(row) for row in rows]

    async def attempt_facts(self, job_id: str) -> tuple[str, list[str]]:
        """The job's last attempt's outcome ('' if none) and every MessageSid it has had."""
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(attempts.c.outcome, attempts.c.provider_sid)
                    .where(attempts.c.job_id == job_id)
                    .order_by(attempts.c.number)
                )
            ).all()
        last = rows[-1].outcome if rows else ""
        return last, [row.provider_sid for row in rows if row.provider_sid]

    async def begin_attempts(
        self, batch: Sequence[JobRow], epoch: int, now: datetime
    ) -> list[JobRow | None]:
        """Mark each job of ``batch`` (one sender's, at most one per recipient) SENDING for
        its next attempt, in one statement; None for a job no longer to be started (done
        meanwhile) or whose recipient has an older job still to be sent. A job left SENDING
        by a replica that died is resumed as it is (its send may have happened). Fenced if
        the sender is held at another epoch (nothing is begun then)."""
        if not batch:
            return []
        tenant_id, sender_number = _one_sender(batch)
        async with self._autocommit.connect() as conn:
            rows = (
                await conn.execute(
                    _BEGIN,
                    {
                        "ids": [job.id for job in batch],
                        "tenant_id": tenant_id,
                        "sender_number": sender_number,
                        "epoch": epoch,
                        "now": now,
                    },
                )
            ).mappings()
            begun = {row["id"]: _job(row) for row in rows}
            if not begun:
                await _check_held(conn, tenant_id, sender_number, epoch)
        return [begun.get(job.id) for job in batch]

    async def begin_attempt(self, job: JobRow, epoch: int, now: datetime) -> JobRow | None:
        """:meth:`begin_attempts` for one job."""
        (begun,) = await self.begin_attempts([job], epoch, now)
        return begun

    async def finish_attempts(
        self, batch: Sequence[tuple[JobRow, Finish]], epoch: int, now: datetime
    ) -> None:
        """Record the attempt each job of ``batch`` (as begun, one sender's) just made and
        move it on, all in one statement; Fenced if the sender was taken over meanwhile
        (nothing is recorded then). A job no longer SENDING is passed over."""
        if not batch:
            return
        tenant_id, sender_number = _one_sender([job for job, _ in batch])
        finishes = [finish for _, finish in batch]
        async with self._autocommit.connect() as conn:
            recorded = (
                await conn.execute(
                    _FINISH,
                    {
                        "ids": [job.id for job, _ in batch],
                        "states": [f.state for f in finishes],
                        "outcomes": [f.outcome for f in finishes],
                        "started": [f.started_at for f in finishes],
                        "codes": [f.error_code for f in finishes],
                        "messages": [f.error_message for f in finishes],
                        "sids": [f.provider_sid for f in finishes],
                        "next_at": [f.next_attempt_at for f in finishes],
                        "fallback": [f.use_fallback for f in finishes],
                        "refund": [f.refund for f in finishes],
                        "tenant_id": tenant_id,
                        "sender_number": sender_number,
                        "epoch": epoch,
                        "now": now,
                    },
                )
            ).all()
            if len(recorded) < len(batch):
                await _check_held(conn, tenant_id, sender_number, epoch)

    async def finish_attempt(self, job: JobRow, epoch: int, finish: Finish, now: datetime) -> None:
        """:meth:`finish_attempts` for one job."""
        await self.finish_attempts([(job, finish)], epoch, now)

    async def late_failure(
        self,
        tenant_id: str,
        idempotency_key: str,
        provider_sid: str,
        finish: Finish,
        now: datetime,
    ) -> JobRow | None:
        """Settle a SENT job that Twilio failed after accepting it (a status callback), as
        ``finish`` says (a closed window with no fallback template fails); None when the
        job is not SENT with that SID (a repeated event, or one settled already). The
        attempt history gets a line of its own."""
        async with self._engine.begin() as conn:
            found = (
                (
                    await conn.execute(
                        sa.select(jobs)
                        .where(
                            jobs.c.tenant_id == tenant_id,
                            jobs.c.idempotency_key == idempotency_key,
                            jobs.c.state == "sent",
                            jobs.c.provider_sid == provider_sid,
                        )
                        .with_for_update()
                    )
                )
                .mappings()
                .one_or_none()
            )
            if found is None:
                return None
            job = _job(found)
            state = finish.state
            values: dict[str, Any] = {}
            if finish.use_fallback:
                if job.fallback_template is None or job.template is not None:
                    state = "failed"
                else:
                    values.update(template=_raw_template(job.fallback_template), body="", media=[])
            values.update(
                state=state,
                updated_at=now,
                last_error_code=finish.error_code,
                last_error_message=finish.error_message,
                next_attempt_at=finish.next_attempt_at if state in STARTABLE else None,
                # A job sent again makes a message of its own.
                provider_sid=None if state in STARTABLE else provider_sid,
                dead_at=now if state == "dead" else None,
            )
            row = (
                (
                    await conn.execute(
                        jobs.update().where(jobs.c.id == job.id).values(**values).returning(*jobs.c)
                    )
                )
                .mappings()
                .one()
            )
            # Epoch 0: no sending replica made this change; Twilio's callback did.
            await _record_attempt(conn, job.id, finish, provider_sid, 0, now)
        return _job(row)

    # -- what admins see and do ----------------------------------------------------------------

    async def stats(self, tenant_id: str, sender_number: str) -> list[SenderStats]:
        """Jobs by state per sender of ``tenant_id`` (only ``sender_number`` if set), or per
        tenant across every tenant when ``tenant_id`` is empty."""
        group = [jobs.c.tenant_id] + ([jobs.c.sender_number] if tenant_id else [])
        query = sa.select(
            *group,
            jobs.c.state,
            sa.func.count().label("n"),
            sa.func.min(jobs.c.created_at).filter(jobs.c.state == "queued").label("oldest"),
        ).group_by(*group, jobs.c.state)
        if tenant_id:
            query = query.where(jobs.c.tenant_id == tenant_id)
        if sender_number:
            query = query.where(jobs.c.sender_number == sender_number)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        found: dict[tuple[str, str], SenderStats] = {}
        for row in rows:
            key = (row["tenant_id"], row.get("sender_number", "") if tenant_id else "")
            stats = found.setdefault(key, SenderStats(key[0], key[1], {}, None))
            stats.counts[row["state"]] = int(row["n"])
            if row["oldest"] is not None:
                found[key] = SenderStats(key[0], key[1], stats.counts, row["oldest"])
        return [found[key] for key in sorted(found)]

    async def dead_letters(
        self,
        tenant_id: str,
        sender_number: str,
        error_code: int,
        limit: int,
        before: tuple[datetime, str] | None,
    ) -> list[JobRow]:
        """Dead jobs, most recently dead first (ties by id)."""
        query = (
            _dead_filter(sa.select(jobs), tenant_id, sender_number, error_code)
            .order_by(jobs.c.dead_at.desc(), jobs.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            dead_at, job_id = before
            query = query.where(
                sa.tuple_(jobs.c.dead_at, jobs.c.id)
                < sa.tuple_(sa.literal(dead_at), sa.literal(job_id))
            )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_job(row) for row in rows]

    async def purge_dead(
        self,
        tenant_id: str,
        job_ids: Sequence[str],
        sender_number: str,
        error_code: int,
        dead_before: datetime | None,
    ) -> int:
        stmt = _dead_filter(jobs.delete(), tenant_id, sender_number, error_code)
        if job_ids:
            stmt = stmt.where(jobs.c.id.in_(job_ids))
        if dead_before is not None:
            stmt = stmt.where(jobs.c.dead_at < dead_before)
        async with self._engine.begin() as conn:
            return len((await conn.execute(stmt.returning(jobs.c.id))).all())

    async def retry_dead_jobs(
        self,
        tenant_id: str,
        job_ids: Sequence[str],
        sender_number: str,
        error_code: int,
        now: datetime,
    ) -> list[tuple[str, str, str]]:
        """Queue dead jobs again (their attempt history kept, their attempt count reset):
        the (tenant, sender, job id) of each, to ring on its sender's stream."""
        stmt = _dead_filter(jobs.update(), tenant_id, sender_number, error_code)
        if job_ids:
            stmt = stmt.where(jobs.c.id.in_(job_ids))
        async with self._engine.begin() as conn:
            rows = (
                await conn.execute(
                    stmt.values(
                        state="queued",
                        attempts=0,
                        dead_at=None,
                        next_attempt_at=None,
                        updated_at=now,
                    ).returning(jobs.c.tenant_id, jobs.c.sender_number, jobs.c.id)
                )
            ).all()
        return [(row.tenant_id, row.sender_number, row.id) for row in rows]


def _key(job: NewJob) -> tuple[str, str]:
    return (job.tenant_id, job.idempotency_key)


async def _by_keys(
    conn: AsyncConnection, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], JobRow]:
    if not keys:
        return {}
    rows = (
        (
            await conn.execute(
                sa.select(jobs).where(
                    sa.tuple_(jobs.c.tenant_id, jobs.c.idempotency_key).in_(list(keys))
                )
            )
        )
        .mappings()
        .all()
    )
    return {(row["tenant_id"], row["idempotency_key"]): _job(row) for row in rows}


async def _record_attempt(
    conn: AsyncConnection,
    job_id: str,
    finish: Finish,
    provider_sid: str | None,
    epoch: int,
    now: datetime,
) -> None:
    # Numbered by history, not by the job's count: a refunded or dead-letter-retried job
    # keeps counting up.
    number = sa.select(sa.func.coalesce(sa.func.max(attempts.c.number), 0) + 1).where(
        attempts.c.job_id == job_id
    )
    await conn.execute(
        attempts.insert().values(
            job_id=job_id,
            number=number.scalar_subquery(),
            started_at=finish.started_at,
            finished_at=now,
            outcome=finish.outcome,
            error_code=finish.error_code,
            error_message=finish.error_message,
            provider_sid=provider_sid,
            epoch=epoch,
        )
    )


async def _check_held(
    conn: AsyncConnection, tenant_id: str, sender_number: str, epoch: int
) -> None:
    held = await conn.scalar(sa.select(_holds(tenant_id, sender_number, epoch)))
    if not held:
        raise Fenced(f"{tenant_id}/{sender_number} is no longer held at epoch {epoch}")


def _one_sender(batch: Sequence[JobRow]) -> tuple[str, str]:
    senders_in = {(job.tenant_id, job.sender_number) for job in batch}
    if len(senders_in) != 1:
        raise ValueError(f"a batch is one sender's, not {len(senders_in)}")
    (sender,) = senders_in
    return sender


def _dead_filter(stmt: Any, tenant_id: str, sender_number: str, error_code: int) -> Any:
    stmt = stmt.where(jobs.c.state == "dead")
    if tenant_id:
        stmt = stmt.where(jobs.c.tenant_id == tenant_id)
    if sender_number:
        stmt = stmt.where(jobs.c.sender_number == sender_number)
    if error_code:
        stmt = stmt.where(jobs.c.last_error_code == error_code)
    return stmt
