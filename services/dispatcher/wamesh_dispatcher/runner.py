"""Sending: one :class:`SenderRunner` per sender this replica holds, started and stopped by
the workers registry through the worker SDK.

A runner owns its sender alone (the registry's hand-over lets it start only once the previous
holder stopped) and every change it records carries its epoch, so a runner that lost the
sender is refused by the job store and stops. Inside it:

- each recipient's jobs go strictly one after another, in enqueue order: the next starts
  only once Twilio accepted or finally refused the one before, and no sooner than the
  tenant's minimum interval per recipient;
- different recipients proceed in parallel, within the sender's rate (a token bucket that
  slows down for a while on 429 / 20429 / 63018) and a cap on sends in flight;
- interactive jobs go first, but every few starts one goes to a waiting bulk job, so a
  backlog of bulk work is never starved (:mod:`turns`);
- the jobs a round starts are marked SENDING in one statement, and the attempts that end
  while one batch is being recorded are recorded together in the next (group commit): a
  recipient's next job still waits until its last attempt is committed;
- Postgres is the queue: the stream only says "look", and the queue is read again every
  ``WAMESH_RECONCILE_INTERVAL_S`` so nothing Redis lost stays unsent;
- a job that was attempted before (a retry, or one a dead replica left SENDING) is looked up
  at Twilio first, since a create that timed out or was cut may have made its message.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from redis.exceptions import RedisError

from wamesh_dispatcher.backoff import Backoff
from wamesh_dispatcher.bell import bell_stream, job_id_of
from wamesh_dispatcher.metrics import SendMetrics
from wamesh_dispatcher.outcomes import OPTED_OUT, Action, Outcome
from wamesh_dispatcher.records import OutboundRecords, Recorded
from wamesh_dispatcher.store import Fenced, Finish, JobRow, JobStore
from wamesh_dispatcher.turns import Turns
from wamesh_dispatcher.twilio_api import Content, Sent, TwilioApi
from wamesh_kit.batching import GroupCommit
from wamesh_kit.errors import Unavailable
from wamesh_kit.streams import entry_context

log = logging.getLogger(__name__)

# A 429-family answer halves the sender's rate for this long.
SLOW_DOWN_S = 30.0
# Twilio's clock and ours may differ a little: a lookup reaches this much further back.
LOOKUP_SLACK = timedelta(seconds=5)
RATE_LIMITED_CODES = (429, 20429, 63018)
# How often a runner whose worker's lease is in doubt looks whether it was renewed.
IN_DOUBT_WAIT_S = 0.2
DONE = ("sent", "failed", "dead")
# The most finished attempts one statement records.
FINISH_BATCH = 500
# The most unknown jobs one read of the queue fetches at once.
RECONCILE_CHUNK = 1000

# A round's begin_attempts: each of its sends reads its own row from the list.
Begun = asyncio.Task[list[JobRow | None]]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SenderLimits:
    messages_per_second: float
    recipient_interval_s: float
    # None: the dispatcher's own setting (a tenant stored before tenants had one).
    max_attempts: int | None = None


@dataclass(frozen=True)
class Account:
    account_sid: str
    auth_token: str


@dataclass(frozen=True)
class Doubt:
    since: datetime | None
    known: frozenset[str]


class TokenBucket:
    """The sender's rate: ``rate`` sends a second, bursts of at most one second's worth."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._clock = clock
        self._tokens = max(1.0, rate)
        self._at = clock()
        self._slow_until = 0.0

    def _refill(self) -> float:
        now = self._clock()
        rate = self._rate / 2 if now < self._slow_until else self._rate
        self._tokens = min(max(1.0, self._rate), self._tokens + (now - self._at) * rate)
        self._at = now
        return rate

    def take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """How long until a token is there."""
        rate = self._refill()
        return max(0.0, (1.0 - self._tokens) / rate)

    def slow_down(self) -> None:
        self._slow_until = self._clock() + SLOW_DOWN_S


@dataclass
class RunnerDeps:
    """What every runner of a replica shares."""

    store: JobStore
    redis: aioredis.Redis
    account: Callable[[str], Awaitable[Account]]
    limits: Callable[[str], Awaitable[SenderLimits]]
    open_api: Callable[[Account], TwilioApi]
    backoff: Backoff
    status_callback_url: str
    sends_in_flight: int
    reconcile_interval_s: float
    # The epoch the SDK says this replica holds the session at now (None: stop).
    holds: Callable[[], int | None] | None = None
    # A sender whose credentials Twilio refused waits this long before trying a job again.
    pause_s: float = 60.0
    metrics: SendMetrics | None = None
    # How far back before a job's last change a doubtful create may have been made: the
    # Twilio call's own timeout.
    lookup_back_s: float = 15.0
    tracer: trace.Tracer = field(default_factory=lambda: trace.get_tracer(__name__))
    # The conversation store; None sends without recording (the runner's own tests).
    records: OutboundRecords | None = None


class SenderRunner:
    def __init__(self, tenant_id: str, sender_number: str, epoch: int, deps: RunnerDeps) -> None:
        self.tenant_id, self.sender_number, self.epoch = tenant_id, sender_number, epoch
        self._deps = deps
        self._queues: dict[str, list[JobRow]] = {}
        self._known: set[str] = set()
        self._busy: set[str] = set()
        self._next_ok: dict[str, float] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self.stopped = False
        # Set once the queue is read and the stream is listened to.
        self.ready = asyncio.Event()
        self._paused_until = 0.0
        self._turns = Turns()
        self._reconcile_now = False
        self._bucket = TokenBucket(1.0)
        self._interval_s = 2.0
        self._max_attempts = deps.backoff.attempts
        self._api: TwilioApi | None = None
        # Every client opened (one per credentials seen), closed when the runner ends: a
        # send in flight keeps the one it started with.
        self._apis: contextlib.AsyncExitStack | None = None
        self._credentials_changed = False
        # The trace each job's Enqueue started, from its stream entry: its send continues it.
        self._contexts: dict[str, Context] = {}
        # Finished attempts are recorded together: those that end while one batch is being
        # committed go in the next.
        self._finishes: GroupCommit[tuple[JobRow, Finish], None] = GroupCommit(
            self._finish_batch, max_batch=FINISH_BATCH
        )

    # -- life --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Send until :meth:`stop`, or until the sender is found held by a newer epoch."""
        try:
            await self._deps.store.claim(self.tenant_id, self.sender_number, self.epoch, utcnow())
            await self._read_limits()
            # The stream's end before the queue is read: a job enqueued in between is in one
            # or the other.
            tail = await self._stream_tail()
            self._merge(await self._unfinished())
            async with contextlib.AsyncExitStack() as apis:
                self._apis = apis
                self._api = await apis.enter_async_context(
                    self._deps.open_api(await self._deps.account(self.tenant_id))
                )
                listening = asyncio.create_task(self._listen(tail))
                self.ready.set()
                try:
                    await self._loop()
                finally:
                    # Stops the listener even should its cancel be lost (redis-py's wait_for
                    # on Python 3.11 can swallow one): it looks at this every second.
                    self._stopping = True
                    listening.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await listening
                    # In-flight sends finish (their Twilio call and its record) before we
                    # return: the registry hands the sender on only after that.
                    await asyncio.gather(*self._sends, return_exceptions=True)
        except Fenced as fenced:
            log.warning("stopped sending: %s", fenced)
        finally:
            self.stopped = True

    async def _read_limits(self) -> None:
        limits = await self._deps.limits(self.tenant_id)
        self._bucket = TokenBucket(limits.messages_per_second)
        self._interval_s = limits.recipient_interval_s
        self._max_attempts = limits.max_attempts or self._deps.backoff.attempts

    def credentials_changed(self) -> None:
        """The tenant changed (its credentials, its limits): the next send uses the new
        credentials and limits, and a sender paused for refused credentials tries again at
        once."""
        self._credentials_changed = True
        self._paused_until = 0.0
        self._wake.set()

    async def _current_api(self) -> TwilioApi:
        if self._credentials_changed and self._apis is not None:
            self._credentials_changed = False
            try:
                await self._read_limits()
            except Unavailable as error:
                log.warning("kept %s's limits: %s", self.tenant_id, error)
            account = await self._deps.account(self.tenant_id)
            self._api = await self._apis.enter_async_context(self._deps.open_api(account))
        return self._require_api()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _loop(self) -> None:
        last_read = time.monotonic()
        while not self._stopping:
            held = self._held_at()
            if held is not None and held != self.epoch:
                return  # held again at a newer epoch: that one's runner sends
            # None: the worker's lease is in doubt for a moment. Start nothing until it is
            # renewed; if it is lost, the worker stops this runner itself.
            wait_s = self._start_due() if held == self.epoch else IN_DOUBT_WAIT_S
            if time.monotonic() - last_read >= self._deps.reconcile_interval_s or (
                self._reconcile_now
            ):
                self._reconcile_now = False
                await self._reconcile()
                last_read = time.monotonic()
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), min(wait_s, self._deps.reconcile_interval_s)
                )

    async def _finish_batch(self, batch: list[tuple[JobRow, Finish]]) -> list[None]:
        await self._deps.store.finish_attempts(batch, self.epoch, utcnow())
        return [None] * len(batch)

    def _held_at(self) -> int | None:
        holds = self._deps.holds
        return self.epoch if holds is None else holds()

    # -- the queue ---------------------------------------------------------------------------

    async def _unfinished(self) -> list[JobRow]:
        return await self._deps.store.unfinished(self.tenant_id, self.sender_number)

    def _merge(self, rows: list[JobRow]) -> None:
        touched = set()
        for row in rows:
            if row.id in self._known:
                continue
            self._known.add(row.id)
            # In enqueue order; a backlog read at start comes in order, so this appends.
            bisect.insort(self._queues.setdefault(row.recipient_number, []), row, key=_seq)
            touched.add(row.recipient_number)
        for recipient in touched:
            self._offer(recipient)
        self._wake.set()

    def _offer(self, recipient: str) -> None:
        """Offer the recipient's head job, due once the recipient's interval has passed and
        the job's own times are reached; nothing while a send to the recipient is in
        flight."""
        queue = self._queues.get(recipient)
        if not queue or recipient in self._busy:
            self._turns.withdraw(recipient)
            return
        head, now_mono, now = queue[0], time.monotonic(), utcnow()
        times = (head.not_before, head.next_attempt_at)
        due = (now_mono + _seconds_until(t, now) for t in times)
        self._turns.offer(head, max(self._next_ok.get(recipient, 0.0), *due))

    async def _reconcile(self) -> None:
        """Merge the jobs the stream did not announce: the ids are read, and only the
        unknown jobs in full (a backlog read whole would hold the loop for its decoding)."""
        ids = await self._deps.store.unfinished_ids(self.tenant_id, self.sender_number)
        unknown = [job_id for job_id in ids if job_id not in self._known]
        for start in range(0, len(unknown), RECONCILE_CHUNK):
            self._merge(await self._deps.store.by_ids(unknown[start : start + RECONCILE_CHUNK]))

    async def _stream_tail(self) -> str:
        try:
            newest: Any = await self._deps.redis.xrevrange(
                bell_stream(self.tenant_id, self.sender_number), count=1
            )
        except RedisError:
            return "0-0"
        return _text(newest[0][0]) if newest else "0-0"

    async def _listen(self, last: str) -> None:
        """New job ids from the sender's stream, read straight from Postgres."""
        stream = bell_stream(self.tenant_id, self.sender_number)
        while not self._stopping:
            try:
                answer: Any = await self._deps.redis.xread({stream: last}, block=1000, count=500)
            except RedisError:
                await asyncio.sleep(1.0)  # the periodic read from Postgres covers the gap
                continue
            for _name, entries in answer or []:
                last = _text(entries[-1][0])
                ids = []
                for _id, fields in entries:
                    ids.append(job_id_of(fields))
                    self._contexts[ids[-1]] = entry_context(fields)
                if any(job_id not in self._known for job_id in ids):
                    self._merge(await self._deps.store.by_ids(ids))

    def _start_due(self) -> float:
        """Start what may start now; how long until something else might."""
        now = time.monotonic()
        if now < self._paused_until:
            return self._paused_until - now
        waits: list[float] = [self._deps.reconcile_interval_s]
        starting: list[JobRow] = []
        while len(self._sends) + len(starting) < self._deps.sends_in_flight:
            job = self._turns.next(now)
            if job is None:
                break
            if not self._bucket.take():
                waits.append(self._bucket.wait_s())
                if self._deps.metrics is not None:
                    self._deps.metrics.rate_waits.inc()
                break
            self._turns.started(job)
            self._busy.add(job.recipient_number)
            starting.append(job)
        later = self._turns.due_in(now)
        if later is not None:
            waits.append(later)
        if starting:
            # One statement begins the round's jobs; each send waits for its own row.
            begun = asyncio.create_task(
                self._deps.store.begin_attempts(starting, self.epoch, utcnow())
            )
            for index, job in enumerate(starting):
                task = asyncio.create_task(self._send(job, begun, index))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
        return min(waits)

    # -- one send ----------------------------------------------------------------------------

    async def _send(self, job: JobRow, round_: Begun, index: int) -> None:
        with self._deps.tracer.start_as_current_span(
            "dispatch send",
            context=self._contexts.pop(job.id, None),
            kind=SpanKind.CLIENT,
            attributes={"wamesh.tenant.id": job.tenant_id, "wamesh.job.id": job.id},
        ):
            await self._send_traced(job, round_, index)

    async def _send_traced(self, job: JobRow, round_: Begun, index: int) -> None:
        recipient = job.recipient_number
        try:
            begun = (await round_)[index]
            if begun is None:
                self._reconcile_now = True  # done meanwhile, or an older job is still due
                self._drop(job)
                return
            finish = await self._attempt(begun, await self._doubt(job))
            # Durable before the recipient's next job may start: the finish is awaited. A
            # new MessageSid is attached in the conversation store meanwhile: neither
            # depends on the other.
            recorded = self._finishes.submit((begun, finish))
            records = self._deps.records
            if finish.outcome == "sent" and finish.provider_sid and records is not None:
                await asyncio.gather(recorded, records.attach(begun, finish.provider_sid))
            else:
                await recorded
            self._count(finish)
            self._after(begun, finish)
        except Fenced as fenced:
            log.warning("sender taken over: %s", fenced)
            self.stop()
        except Exception:
            log.exception("sending job %s failed unexpectedly; it is read again", job.id)
            self._reconcile_now = True
            self._drop(job)
        finally:
            self._busy.discard(recipient)
            self._next_ok[recipient] = time.monotonic() + self._interval_s
            self._offer(recipient)
            self._wake.set()

    async def _doubt(self, job: JobRow) -> Doubt:
        """What earlier attempts leave in doubt. ``since`` is set when one may have made the
        job's message unknown to us (a dead replica left it SENDING, or a create went
        unanswered and its lookup failed): look there first. ``known`` are the SIDs the
        job had already, never to be taken for a new one (after a late failure the job's
        first message is still at Twilio)."""
        if job.state != "sending" and job.attempts == 0:
            return Doubt(None, frozenset())
        last, known = await self._deps.store.attempt_facts(job.id)
        if job.state != "sending" and last != "ambiguous":
            return Doubt(None, frozenset(known))
        # The create began at most one Twilio timeout before the job last changed.
        since = job.updated_at - timedelta(seconds=self._deps.lookup_back_s) - LOOKUP_SLACK
        return Doubt(since, frozenset(known))

    async def _attempt(self, job: JobRow, doubt: Doubt) -> Finish:
        started = utcnow()
        api = await self._current_api()
        content = _content(job)
        records = self._deps.records
        recorded = Recorded.YES if records is None else await records.record(job)
        if recorded is Recorded.STORE_AWAY:
            # The conversation must show what is sent: wait for the store, without the
            # attempt counting against the job.
            wait = timedelta(seconds=self._deps.backoff.delay(1))
            return Finish(
                "deferred",
                "retrying",
                started,
                error_message="the conversation store is away",
                next_attempt_at=utcnow() + wait,
                refund=True,
            )
        if recorded is Recorded.RECIPIENT_OPTED_OUT:
            # The store failed the message: final, and no send of the job's is spent on it.
            return Finish(
                "opted_out", "failed", started, OPTED_OUT, "recipient opted out", refund=True
            )
        if doubt.since is not None:
            found = await self._find(job, doubt.since, doubt.known)
            if isinstance(found, str):
                return Finish("found", "sent", started, provider_sid=found)
            if isinstance(found, Outcome):
                return self._retry_or_dead(job, started, found, "ambiguous")
        if self._held_at() != self.epoch:
            # Decided under the lease, or not at all: the lease went in doubt meanwhile.
            return Finish("deferred", "queued", started, refund=True)
        result = await api.create(
            to=_whatsapp(job.recipient_number),
            from_=_whatsapp(job.sender_number),
            content=content,
            status_callback=self._deps.status_callback_url,
        )
        if isinstance(result, Sent):
            return Finish("sent", "sent", started, provider_sid=result.sid)
        return await self._failed(job, started, result, doubt.known)

    async def _find(
        self, job: JobRow, since: datetime, known: frozenset[str]
    ) -> str | Outcome | None:
        """The SID of a message Twilio made for ``job`` since ``since`` (not one of
        ``known``), None if there is none, or the lookup's own failure."""
        found = await self._require_api().find_sent(
            to=_whatsapp(job.recipient_number),
            from_=_whatsapp(job.sender_number),
            since=since,
            content=_content(job),
        )
        if isinstance(found, Outcome):
            return found
        sids = [sid for sid in found.sids if sid not in known]
        return sids[-1] if sids else None

    async def _failed(
        self, job: JobRow, started: datetime, outcome: Outcome, known: frozenset[str]
    ) -> Finish:
        code = outcome.code or 0
        if outcome.action is Action.AMBIGUOUS:
            found = await self._find(job, started - LOOKUP_SLACK, known)
            if isinstance(found, str):
                return Finish("found", "sent", started, provider_sid=found)
            # Not there: it never reached Twilio, a plain retry. The lookup failing is the
            # one case nobody can know: "ambiguous", and the next attempt looks again.
            return self._retry_or_dead(
                job, started, outcome, "ambiguous" if isinstance(found, Outcome) else "retry"
            )
        if outcome.action is Action.RETRY:
            if code in RATE_LIMITED_CODES or outcome.reason == "too many requests":
                self._bucket.slow_down()
            return self._retry_or_dead(job, started, outcome, "retry")
        if outcome.action is Action.WINDOW_CLOSED and job.fallback_template is not None:
            return Finish(
                "window_closed", "queued", started, code, outcome.message, use_fallback=True
            )
        if outcome.action is Action.PAUSE_SENDER:
            self._paused_until = time.monotonic() + self._deps.pause_s
            log.warning(
                "Twilio refused %s/%s's credentials (%s): pausing the sender",
                self.tenant_id,
                self.sender_number,
                code,
            )
            return Finish("paused", "queued", started, code, outcome.message, refund=True)
        if outcome.action is Action.OPT_OUT and self._deps.records is not None:
            await self._deps.records.opt_out(job)
        return Finish("failed", "failed", started, code, f"{outcome.reason}: {outcome.message}")

    def _count(self, finish: Finish) -> None:
        metrics = self._deps.metrics
        if metrics is None:
            return
        metrics.attempts.labels(finish.outcome).inc()
        metrics.send_seconds.observe((utcnow() - finish.started_at).total_seconds())
        if finish.outcome not in ("sent", "found", "deferred", "opted_out"):
            metrics.twilio_errors.labels(str(finish.error_code)).inc()
        if finish.outcome == "ambiguous":
            metrics.unsettled.inc()

    def _retry_or_dead(self, job: JobRow, started: datetime, outcome: Outcome, kind: str) -> Finish:
        message = f"{outcome.reason}: {outcome.message}"
        code = outcome.code or 0
        if job.attempts >= self._max_attempts:
            return Finish(kind, "dead", started, code, message)
        wait = timedelta(seconds=self._deps.backoff.delay(job.attempts))
        return Finish(kind, "retrying", started, code, message, next_attempt_at=utcnow() + wait)

    def _after(self, job: JobRow, finish: Finish) -> None:
        """The recipient's queue once ``finish`` is recorded."""
        if finish.state in DONE:
            self._drop(job)
            return
        queue = self._queues.get(job.recipient_number, [])
        if queue and queue[0].id == job.id:
            updated = replace(
                job,
                state=finish.state,
                next_attempt_at=finish.next_attempt_at,
                attempts=job.attempts - 1 if finish.refund else job.attempts,
            )
            if finish.use_fallback and job.fallback_template is not None:
                updated = replace(updated, template=job.fallback_template, body="", media=())
            queue[0] = updated

    def _drop(self, job: JobRow) -> None:
        queue = self._queues.get(job.recipient_number, [])
        self._queues[job.recipient_number] = [j for j in queue if j.id != job.id]
        if not self._queues[job.recipient_number]:
            del self._queues[job.recipient_number]
        self._known.discard(job.id)

    def _require_api(self) -> TwilioApi:
        if self._api is None:
            raise RuntimeError("the runner sends only inside run()")
        return self._api


def _seq(job: JobRow) -> int:
    return job.seq


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _seconds_until(at: datetime | None, now: datetime) -> float:
    return 0.0 if at is None else (at - now).total_seconds()


def _whatsapp(number: str) -> str:
    return f"whatsapp:{number}"


def _content(job: JobRow) -> Content:
    if job.template is not None:
        return Content(
            content_sid=job.template.content_sid, content_variables=job.template.variables
        )
    return Content(body=job.body, media_urls=tuple(url for url, _ in job.media))
