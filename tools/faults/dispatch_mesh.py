"""The outbound half of the mesh as separate processes, for the dispatcher's fault tests.

PostgreSQL and Redis from the wheels (``LocalInfra``, no persistence: a flush or a restart
loses what Redis held, as it would), then ``wamesh serve tenants``, ``workers`` and
``conversations`` (a replica records each message there before its first attempt, and sends
nothing while it cannot), the Twilio sandbox (``wamesh dev run sandbox``) and dispatcher
replicas, each its own process with its log in the data folder. Sending replicas are twilio
session workers placed by the real registry; an intake-only replica (``WAMESH_SEND=false``)
takes the Enqueues, so a test can kill or freeze every sending replica and still enqueue.

The sandbox is given an accounts file with one account and :data:`SENDERS` WhatsApp senders:
run as a process without one it knows a single development sender, and a fault test needs
many senders spread over replicas. Used by tests/faults/test_dispatch_faults.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import redis.asyncio as aioredis
import sqlalchemy as sa
from google.protobuf.duration_pb2 import Duration

from tools.faults.mesh import ProcessMesh, Service, frozen_processes
from wamesh.dispatch.v1 import dispatch_pb2 as dispatch_pb
from wamesh.dispatch.v1 import dispatch_pb2_grpc
from wamesh.tenants.v1 import tenants_pb2 as tenants_pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh.workers.v1 import workers_pb2 as workers_pb
from wamesh.workers.v1 import workers_pb2_grpc
from wamesh_kit.db import make_engine
from wamesh_kit.localinfra import free_port
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN

# The sandbox's one account, which every test tenant sends through.
ACCOUNT_SID = "AC" + "d1" * 16
AUTH_TOKEN = "dispatch0faults0token"
# Senders the sandbox knows for that account: +1 555 700 0000 and on.
SENDERS = 64
LEASE_TTL_S = 2.0
DONE_STATES = ("sent", "failed", "dead")


def sender_number(index: int) -> str:
    return f"+1555700{index:04d}"


class Tool(Service):
    """A development tool run as ``wamesh dev run <name>`` (the sandbox is one)."""

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wamesh_kit", "dev", "run", self.name],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )


@dataclass(frozen=True)
class DispatchTenant:
    tenant_id: str
    senders: tuple[str, ...]  # E.164, each one the sandbox's account knows


@dataclass(frozen=True)
class JobFate:
    """One job as the dispatcher's database holds it, with its attempts oldest first."""

    idempotency_key: str
    seq: int
    sender_number: str
    recipient_number: str
    body: str
    state: str
    attempts: int  # the counter: a SIGKILL mid-send leaves it above len(outcomes)
    outcomes: tuple[str, ...]
    provider_sid: str | None


@dataclass
class DispatchMesh(ProcessMesh):
    """``with DispatchMesh(folder, replicas=2) as mesh:`` the outbound mesh, running."""

    replicas: int = 2
    intake: bool = True
    reconcile_interval_s: float = 0.5
    _common: dict[str, str] = field(init=False, default_factory=dict)
    _senders_used: int = field(init=False, default=0)

    # -- start

    def _start(self) -> None:
        histories = {history.name: history for history in service_histories()}
        for name in ("tenants", "workers", "conversations", "dispatcher"):
            upgrade_database(self.infra.postgres.dsn(name), histories[name])
        for name in ("tenants", "workers", "conversations", "sandbox", "intake"):
            self.ports[name] = free_port()
        # Nothing listens here: status callbacks fail at once and cost the sandbox nothing.
        self.ports["callbacks"] = free_port()
        common = {
            "WAMESH_REDIS_URL": self.infra.redis.url,
            "WAMESH_METRICS_LISTEN": "",
            "WAMESH_LOG_FORMAT": "json",
            "WAMESH_SHUTDOWN_GRACE_S": "1",
        }
        keys = "k1:" + base64.b64encode(os.urandom(32)).decode()
        self.add(
            Service(
                "tenants",
                {
                    **common,
                    "WAMESH_GRPC_LISTEN": self.target("tenants"),
                    "WAMESH_DATABASE_URL": self.infra.postgres.dsn("tenants"),
                    "WAMESH_CREDENTIAL_KEYS": keys,
                    "WAMESH_CREDENTIAL_ACTIVE_KEY": "k1",
                },
                self.log("tenants"),
            )
        )
        self.add(
            Service(
                "workers",
                {
                    **common,
                    "WAMESH_GRPC_LISTEN": self.target("workers"),
                    "WAMESH_DATABASE_URL": self.infra.postgres.dsn("workers"),
                    # A dead replica's senders move within seconds, as in the handover test.
                    "WAMESH_LEASE_TTL_S": str(LEASE_TTL_S),
                    "WAMESH_HEARTBEAT_INTERVAL_S": "0.5",
                    "WAMESH_SWEEP_INTERVAL_S": "0.2",
                },
                self.log("workers"),
            )
        )
        self.add(
            Service(
                "conversations",
                {
                    **common,
                    "WAMESH_GRPC_LISTEN": self.target("conversations"),
                    "WAMESH_DATABASE_URL": self.infra.postgres.dsn("conversations"),
                },
                self.log("conversations"),
            )
        )
        accounts = self.data_dir / "sandbox-accounts.json"
        accounts.write_text(
            json.dumps(
                {
                    "accounts": [
                        {
                            "sid": ACCOUNT_SID,
                            "auth_token": AUTH_TOKEN,
                            "senders": {f"whatsapp:{sender_number(i)}": {} for i in range(SENDERS)},
                        }
                    ]
                }
            )
        )
        sandbox = Tool(
            "sandbox",
            {
                "WAMESH_SANDBOX_LISTEN": f"127.0.0.1:{self.ports['sandbox']}",
                "WAMESH_SANDBOX_ACCOUNTS_FILE": str(accounts),
                # The record on disk too, for a post-mortem of a failed run.
                "WAMESH_SANDBOX_RECORD_FILE": str(self.data_dir / "sandbox-record.jsonl"),
                # Callbacks go nowhere (no ingress here): as few as possible, tried once.
                "WAMESH_SANDBOX_READ_RECEIPTS": "false",
                "WAMESH_SANDBOX_CALLBACK_ATTEMPTS": "1",
                "WAMESH_SANDBOX_CALLBACK_TIMEOUT_S": "1",
            },
            self.log("sandbox"),
        )
        self.add(sandbox)
        self._common.update(common)
        if self.intake:
            self.add(self._replica("intake", self.ports["intake"], send=False), "intake")
        for index in range(1, self.replicas + 1):
            self.start_replica(f"d{index}")
        asyncio.run(self._until_ready())

    def _replica(self, name: str, port: int, *, send: bool) -> Service:
        service = Service(
            "dispatcher",
            {
                **self._common,
                "WAMESH_GRPC_LISTEN": f"127.0.0.1:{port}",
                "WAMESH_DATABASE_URL": self.infra.postgres.dsn("dispatcher"),
                "WAMESH_INSTANCE_ID": name,
                "WAMESH_SEND": "true" if send else "false",
                "WAMESH_TENANTS_TARGET": self.target("tenants"),
                "WAMESH_WORKERS_TARGET": self.target("workers"),
                "WAMESH_CONVERSATIONS_TARGET": self.target("conversations"),
                "WAMESH_TWILIO_BASE_URL": self.sandbox_url,
                "WAMESH_TWILIO_TIMEOUT_S": "5",
                "WAMESH_STATUS_CALLBACK_URL": (
                    f"http://127.0.0.1:{self.ports['callbacks']}/twilio/status"
                ),
                # Bells a flush lost are made up for within half a second.
                "WAMESH_RECONCILE_INTERVAL_S": str(self.reconcile_interval_s),
                # A retry (an ambiguous lookup, a stray 5xx) must not outlast the test.
                "WAMESH_BACKOFF_BASE_S": "0.2",
                "WAMESH_BACKOFF_CAP_S": "1",
            },
            self.log(name),
        )
        return service

    def start_replica(self, name: str) -> None:
        """A sending replica ``name`` (its WAMESH_INSTANCE_ID), on a free port; see
        :meth:`until_registered`."""
        self.ports[name] = free_port()
        self.add(self._replica(name, self.ports[name], send=True), name)

    async def _until_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as http:
            while True:
                self.check_alive()
                with suppress(httpx.HTTPError):
                    if (await http.get(f"{self.sandbox_url}/sandbox/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start")
                await asyncio.sleep(0.2)
        for name in ("tenants", "conversations", *(("intake",) if self.intake else ())):
            async with make_channel(self.target(name)) as channel:
                await asyncio.wait_for(channel.channel_ready(), timeout_s)
        await self.until_registered(self.sending_replicas(), timeout_s)

    async def until_registered(self, names: set[str], timeout_s: float = 60) -> None:
        """Wait until every replica of ``names`` is an active worker in the registry."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            with suppress(Exception):  # the registry may still be starting
                if names <= set((await self.workers()).values()):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas {sorted(names)} never registered")
            await asyncio.sleep(0.2)

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['sandbox']}"

    def sending_replicas(self) -> set[str]:
        return {
            name
            for name, service in self.services.items()
            if service.name == "dispatcher"
            and name != "intake"
            and service.process is not None
            and service.process.poll() is None
        }

    # -- tenants

    async def create_tenant(
        self,
        senders: int,
        *,
        per_second: float = 80.0,
        recipient_interval: timedelta = timedelta(seconds=2),
    ) -> DispatchTenant:
        """A tenant with ``senders`` numbers the sandbox's account knows (each used once per
        mesh) and that account's credentials."""
        if self._senders_used + senders > SENDERS:
            raise ValueError(f"the sandbox knows only {SENDERS} senders")
        numbers = tuple(
            sender_number(i) for i in range(self._senders_used, self._senders_used + senders)
        )
        self._senders_used += senders
        tenant_id = f"dispatch-{secrets.token_hex(4)}"
        interval = Duration()
        interval.FromTimedelta(recipient_interval)
        async with make_channel(self.target("tenants"), token=DEV_ADMIN_TOKEN) as channel:
            admin: Any = tenants_pb2_grpc.TenantRegistryStub(channel)
            await admin.CreateTenant(
                tenants_pb.CreateTenantRequest(
                    request_id=tenant_id,
                    tenant_id=tenant_id,
                    display_name=tenant_id,
                    limits=tenants_pb.Limits(
                        outbound_messages_per_second=per_second,
                        recipient_min_interval=interval,
                    ),
                )
            )
            for number in numbers:
                await admin.AddSenderNumber(
                    tenants_pb.AddSenderNumberRequest(tenant_id=tenant_id, number=number)
                )
            await admin.SetCredentials(
                tenants_pb.SetCredentialsRequest(
                    tenant_id=tenant_id,
                    credentials=tenants_pb.TwilioCredentials(
                        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN
                    ),
                )
            )
        return DispatchTenant(tenant_id, numbers)

    async def enqueue(
        self, jobs: Sequence[dispatch_pb.EnqueueRequest], via: str = "intake"
    ) -> list[dispatch_pb.EnqueueResponse]:
        """EnqueueBatch in order, 500 at a time (the contract's most per call)."""
        found: list[dispatch_pb.EnqueueResponse] = []
        async with make_channel(self.target(via), token=DEV_INTERNAL_TOKEN) as channel:
            stub: Any = dispatch_pb2_grpc.DispatcherStub(channel)
            for start in range(0, len(jobs), 500):
                answer = await stub.EnqueueBatch(
                    dispatch_pb.EnqueueBatchRequest(jobs=jobs[start : start + 500]), timeout=30
                )
                found.extend(answer.results)
        return found

    # -- the workers registry

    async def workers(self) -> dict[str, str]:
        """Active twilio workers: registry worker id → instance id (the replica's name)."""
        async with make_channel(self.target("workers"), token=DEV_ADMIN_TOKEN) as channel:
            stub: Any = workers_pb2_grpc.WorkerRegistryStub(channel)
            listed = await stub.ListWorkers(workers_pb.ListWorkersRequest(page_size=100))
        return {
            w.id: w.instance_id
            for w in listed.workers
            if w.state == workers_pb.WORKER_STATE_ACTIVE and w.kind == "twilio"
        }

    async def senders_by_replica(self) -> dict[str, list[str]]:
        """Replica name → the sender sessions assigned to it now."""
        names = await self.workers()
        placed: dict[str, list[str]] = {}
        async with make_channel(self.target("workers"), token=DEV_ADMIN_TOKEN) as channel:
            stub: Any = workers_pb2_grpc.WorkerRegistryStub(channel)
            token = ""
            while True:
                page = await stub.ListSessions(
                    workers_pb.ListSessionsRequest(page_size=500, page_token=token, kind="twilio")
                )
                for session in page.sessions:
                    if session.state == workers_pb.SESSION_STATE_ASSIGNED:
                        name = names.get(session.worker_id, session.worker_id)
                        placed.setdefault(name, []).append(session.id)
                if not (token := page.next_page_token):
                    break
        return placed

    # -- faults

    @contextmanager
    def frozen(self, *names: str) -> Iterator[None]:
        """SIGSTOP the named processes and their children; SIGCONT them on the way out."""
        with frozen_processes(*(self.services[name].pid for name in names)):
            yield

    async def flush_redis(self) -> None:
        client = aioredis.Redis.from_url(self.infra.redis.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()

    async def sandbox_fault(self, **spec: Any) -> None:
        """A sandbox fault (POST /sandbox/faults) on the account's creates."""
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{self.sandbox_url}/sandbox/faults", json={"account_sid": ACCOUNT_SID, **spec}
            )
            answer.raise_for_status()

    async def clear_sandbox_faults(self) -> None:
        async with httpx.AsyncClient() as http:
            (await http.delete(f"{self.sandbox_url}/sandbox/faults")).raise_for_status()

    # -- what the sandbox and the dispatcher's database hold

    async def sandbox_messages(self) -> list[dict[str, Any]]:
        """Every message the sandbox accepted for the account, oldest first."""
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.get(
                f"{self.sandbox_url}/sandbox/messages", params={"account_sid": ACCOUNT_SID}
            )
            answer.raise_for_status()
        messages: list[dict[str, Any]] = answer.json()["messages"]
        return messages

    async def job_states(self, key_prefix: str) -> dict[str, int]:
        """State → how many jobs whose idempotency key starts with ``key_prefix``."""
        engine = make_engine(self.infra.postgres.dsn("dispatcher"), pool_size=1)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    sa.text(
                        "SELECT state, count(*) FROM jobs WHERE idempotency_key LIKE :prefix "
                        "GROUP BY state"
                    ),
                    {"prefix": key_prefix + "%"},
                )
                return {str(state): int(count) for state, count in rows}
        finally:
            await engine.dispose()

    async def jobs(self, key_prefix: str) -> dict[str, JobFate]:
        """Idempotency key → the job's fate, for keys starting with ``key_prefix``."""
        engine = make_engine(self.infra.postgres.dsn("dispatcher"), pool_size=1)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    sa.text(
                        "SELECT j.idempotency_key, j.seq, j.sender_number, j.recipient_number, "
                        "j.body, j.state, j.attempts, j.provider_sid, "
                        "coalesce(array_agg(a.outcome ORDER BY a.number) "
                        "FILTER (WHERE a.outcome IS NOT NULL), '{}') "
                        "FROM jobs j LEFT JOIN attempts a ON a.job_id = j.id "
                        "WHERE j.idempotency_key LIKE :prefix GROUP BY j.id"
                    ),
                    {"prefix": key_prefix + "%"},
                )
                return {
                    str(row[0]): JobFate(
                        idempotency_key=str(row[0]),
                        seq=int(row[1]),
                        sender_number=str(row[2]),
                        recipient_number=str(row[3]),
                        body=str(row[4]),
                        state=str(row[5]),
                        attempts=int(row[6]),
                        provider_sid=None if row[7] is None else str(row[7]),
                        outcomes=tuple(str(outcome) for outcome in row[8]),
                    )
                    for row in rows
                }
        finally:
            await engine.dispose()

    async def until_done(self, key_prefix: str, expected: int, timeout_s: float) -> float:
        """Wait until ``expected`` jobs of ``key_prefix`` are SENT, FAILED or DEAD; seconds
        taken. TimeoutError with the states the jobs were left in."""
        started = time.monotonic()
        states: dict[str, int] = {}
        while time.monotonic() - started < timeout_s:
            self.check_alive()
            with suppress(OSError, sa.exc.DBAPIError):
                states = await self.job_states(key_prefix)
                if sum(states.get(state, 0) for state in DONE_STATES) >= expected:
                    return time.monotonic() - started
            await asyncio.sleep(0.2)
        raise TimeoutError(f"after {timeout_s:.0f} s the {expected} jobs were {states}")
