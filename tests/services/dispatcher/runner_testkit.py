"""Sending against the sandbox as Twilio, over real Postgres and Redis: a dispatcher database
of its own (``runner_dsn``), a job store on it, and a :class:`Harness` that enqueues jobs,
runs senders and reads what became of the jobs. Test modules import the fixtures they use."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

import wamesh_dispatcher
import wamesh_workers
from tests.services.dispatcher.dispatcher_testkit import sandbox_messages
from tests.services.workers.workers_testkit import make_settings as registry_settings
from tests.tools.sandbox.sandbox_testkit import ACCOUNT, SENDER, Running
from wamesh_dispatcher import bell
from wamesh_dispatcher.backoff import Backoff
from wamesh_dispatcher.runner import Account, RunnerDeps, SenderLimits, SenderRunner
from wamesh_dispatcher.store import JobRow, JobStore, NewJob
from wamesh_dispatcher.twilio_api import TwilioApi
from wamesh_kit.db import make_engine
from wamesh_kit.migrations import MigrationHistory, upgrade_database
from wamesh_kit.redis_client import make_redis
from wamesh_kit.rpc.server import GrpcService
from wamesh_workers.app import workers_service

FROM = SENDER.removeprefix("whatsapp:")
MIGRATIONS = Path(wamesh_dispatcher.__file__).parent / "migrations"


@pytest.fixture(scope="module")
def runner_dsn(new_database: Callable[[str], str]) -> str:
    dsn = new_database("dispatcher")
    upgrade_database(dsn, MigrationHistory("dispatcher", MIGRATIONS))
    return dsn


@pytest.fixture
async def engine(runner_dsn: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(runner_dsn)
    yield made
    await made.dispose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = make_redis(redis_url)
    yield client
    await client.aclose()


def recipient(n: int) -> str:
    return f"+1555{n:07d}"


def whatsapp(n: int) -> str:
    return f"whatsapp:{recipient(n)}"


async def bodies_to(harness: Harness, n: int) -> list[str]:
    """What the sandbox says recipient ``n`` received, oldest first."""
    return [m["body"] for m in await sandbox_messages(harness.sandbox, to=whatsapp(n))]


class Harness:
    def __init__(self, sandbox: Running, store: JobStore, redis: aioredis.Redis) -> None:
        self.sandbox, self.store, self.redis = sandbox, store, redis
        # A tenant of its own per test: the sender's epoch row is per tenant and sender.
        self.tenant = "t-" + uuid.uuid4().hex[:10]
        self.sender = FROM  # the sandbox knows this sender for its account

    def deps(self, **overrides: Any) -> RunnerDeps:
        async def account(_: str) -> Account:
            return Account(ACCOUNT.sid, ACCOUNT.auth_token)

        async def limits(_: str) -> SenderLimits:
            return SenderLimits(messages_per_second=500.0, recipient_interval_s=0.0)

        values: dict[str, Any] = {
            "store": self.store,
            "redis": self.redis,
            "account": account,
            "limits": limits,
            "open_api": lambda a: TwilioApi(a.account_sid, a.auth_token, base_url=self.sandbox.url),
            "backoff": Backoff(base_s=0.05, cap_s=0.1, attempts=3),
            "status_callback_url": "http://127.0.0.1:9/twilio/status",
            "sends_in_flight": 8,
            "reconcile_interval_s": 0.3,
            "pause_s": 0.3,
            **overrides,
        }
        return RunnerDeps(**values)

    async def enqueue(
        self, *jobs: tuple[str, str], ring: bool = True, **fields: Any
    ) -> list[JobRow]:
        """(recipient, body) pairs, enqueued in order; the doorbell rung unless not."""
        made = await self.store.enqueue(
            [
                NewJob(
                    tenant_id=self.tenant,
                    idempotency_key=f"{to}:{body}",
                    sender_number=self.sender,
                    recipient_number=to,
                    body=body,
                    **fields,
                )
                for to, body in jobs
            ],
            datetime.now(UTC),
        )
        rows = [row for row, _ in made]
        if ring:
            await bell.ring(self.redis, self.tenant, self.sender, [row.id for row in rows])
        return rows

    async def states(self, rows: list[JobRow]) -> dict[str, str]:
        found = {}
        for row in rows:
            job, _ = await self.store.job(self.tenant, job_id=row.id)
            found[row.id] = job.state
        return found

    async def until(
        self, rows: list[JobRow], done: Callable[[str], bool], timeout_s: float = 30
    ) -> None:
        async with asyncio.timeout(timeout_s):
            while not all(done(state) for state in (await self.states(rows)).values()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)


@pytest.fixture
async def harness(sandbox: Running, engine: AsyncEngine, redis: aioredis.Redis) -> Harness:
    return Harness(sandbox, JobStore(engine), redis)


@contextlib.asynccontextmanager
async def running(harness: Harness, epoch: int = 1, **deps: Any) -> AsyncIterator[SenderRunner]:
    runner = SenderRunner(harness.tenant, harness.sender, epoch, harness.deps(**deps))
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)


@pytest.fixture(scope="module")
def registry_dsn(new_database: Callable[[str], str]) -> str:
    dsn = new_database("workers")
    migrations = Path(wamesh_workers.__file__).parent / "migrations"
    upgrade_database(dsn, MigrationHistory("workers", migrations))
    return dsn


@pytest.fixture
async def registry(registry_dsn: str, redis_url: str) -> AsyncIterator[GrpcService]:
    """The real workers registry, in-process: what places senders on dispatcher replicas."""
    settings = registry_settings(registry_dsn, redis_url, rebalance_moves_per_sweep=0)
    async with workers_service(settings, registry=CollectorRegistry()) as server:
        yield server
