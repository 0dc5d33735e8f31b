"""The real mesh as separate processes, with the faults an outage brings, on command.

PostgreSQL and Redis from the wheels (``LocalInfra``), then ``wamesh serve tenants``,
``conversations`` and ``ingress``, each its own process with its log in the data folder.
The faults act on the real processes: SIGSTOP/SIGCONT (a frozen process: a stalled disk, a
paused VM, a GC storm), SIGKILL and restart, a PostgreSQL stop and start, a Redis FLUSHALL.
Used by the fault suite (tests/faults/) and the answer-time measurement
(tools/faults/answer_time.py).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import psutil  # type: ignore[import-untyped]
import redis.asyncio as aioredis
import sqlalchemy as sa

from wamesh.tenants.v1 import tenants_pb2 as tenants_pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit.db import make_engine
from wamesh_kit.localinfra import LocalInfra, free_port
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN

SPILL_STREAM = "wamesh:stream:ingress-spill"
INBOUND_STREAM = "wamesh:stream:inbound"


@dataclass(frozen=True)
class MeshTenant:
    tenant_id: str
    number: str
    account_sid: str
    auth_token: str


@dataclass
class Service:
    name: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "wamesh_kit", "serve", self.name],
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@contextmanager
def frozen_processes(*pids: int) -> Iterator[None]:
    """SIGSTOP ``pids`` and their children; SIGCONT them on the way out."""
    family = []
    for pid in pids:
        root = psutil.Process(pid)
        family += [root, *root.children(recursive=True)]
    for process in family:
        process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for process in family:
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)


@dataclass
class ProcessMesh:
    """PostgreSQL and Redis from the wheels, and services as processes, each with its log in
    the data folder: what every mesh of real processes shares (start, stop, ports, kill,
    restart). A subclass starts its services in ``_start`` with :meth:`add`."""

    data_dir: Path
    # No persistence by default: a flush or a restart of Redis loses everything, as it would.
    durable: bool = False
    infra: LocalInfra = field(init=False)
    services: dict[str, Service] = field(init=False, default_factory=dict)
    ports: dict[str, int] = field(init=False, default_factory=dict)
    killed: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.infra = LocalInfra(self.data_dir, durable=self.durable)

    def __enter__(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.infra.start()
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for service in reversed(self.services.values()):
            service.stop()
        self.infra.postgres.stop()  # a frozen Postgres was thawed by the fault's own cleanup
        self.infra.redis.stop()

    def _start(self) -> None:
        raise NotImplementedError

    def add(self, service: Service, key: str | None = None) -> None:
        """Start ``service``, known as ``key`` (several replicas serve one service)."""
        self.services[key or service.name] = service
        service.start()

    def target(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"

    def log(self, name: str) -> Path:
        return self.data_dir / f"{name}.log"

    def check_alive(self) -> None:
        """RuntimeError naming a process that exited without being killed."""
        for name, service in self.services.items():
            exited = service.process is not None and service.process.poll() is not None
            if exited and name not in self.killed:
                raise RuntimeError(f"{name} exited: see {service.log}")

    def kill(self, name: str) -> None:
        self.killed.add(name)  # first: check_alive must not take the death for a crash
        self.services[name].kill()

    def restart(self, name: str) -> None:
        """Starts the killed process ``name`` again, as it was (same port, same name)."""
        self.services[name].start()
        self.killed.discard(name)

    def postgres_pid(self) -> int:
        pid_file = self.infra.postgres.data_dir / "pgdata" / "postmaster.pid"
        return int(pid_file.read_text().split()[0])


@dataclass
class FaultMesh(ProcessMesh):
    """``with FaultMesh(folder, ingress_env={...}) as mesh:`` the mesh, running."""

    ingress_env: Mapping[str, str] = field(default_factory=dict)
    conversations_env: Mapping[str, str] = field(default_factory=dict)

    def _start(self) -> None:
        histories = {history.name: history for history in service_histories()}
        for name in ("tenants", "conversations"):
            upgrade_database(self.infra.postgres.dsn(name), histories[name])
        self.ports = {name: free_port() for name in ("tenants", "conversations", "ingress")}
        common = {
            "WAMESH_REDIS_URL": self.infra.redis.url,
            "WAMESH_METRICS_LISTEN": "",
            "WAMESH_LOG_FORMAT": "json",
            "WAMESH_SHUTDOWN_GRACE_S": "1",
        }
        keys = "k1:" + base64.b64encode(os.urandom(32)).decode()
        envs = {
            "tenants": {
                "WAMESH_GRPC_LISTEN": f"127.0.0.1:{self.ports['tenants']}",
                "WAMESH_DATABASE_URL": self.infra.postgres.dsn("tenants"),
                "WAMESH_CREDENTIAL_KEYS": keys,
                "WAMESH_CREDENTIAL_ACTIVE_KEY": "k1",
            },
            "conversations": {
                "WAMESH_GRPC_LISTEN": f"127.0.0.1:{self.ports['conversations']}",
                "WAMESH_DATABASE_URL": self.infra.postgres.dsn("conversations"),
                "WAMESH_OUTBOX_POLL_S": "0.1",
                **self.conversations_env,
            },
            "ingress": {
                "WAMESH_HTTP_LISTEN": f"127.0.0.1:{self.ports['ingress']}",
                "WAMESH_TENANTS_TARGET": f"127.0.0.1:{self.ports['tenants']}",
                "WAMESH_CONVERSATIONS_TARGET": f"127.0.0.1:{self.ports['conversations']}",
                "WAMESH_PER_IP_REQUESTS_PER_S": "100000",
                "WAMESH_PER_IP_BURST": "100000",
                **self.ingress_env,
            },
        }
        for name, env in envs.items():
            self.add(Service(name, {**common, **env}, self.log(name)))
        asyncio.run(self._until_ready())

    async def _until_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not await self.ingress_ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the mesh did not become ready")
            await asyncio.sleep(0.2)

    async def ingress_ready(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.ports["ingress"])
        except OSError:
            return False
        try:
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return (await reader.readline()).startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    # -- the tenant Twilio writes for

    async def create_tenant(self) -> MeshTenant:
        tenant = MeshTenant(
            tenant_id=f"faults-{secrets.token_hex(4)}",
            number="+1444" + str(secrets.randbelow(10**7)).zfill(7),
            account_sid="AC" + secrets.token_hex(16),
            auth_token=secrets.token_hex(16),
        )
        target = f"127.0.0.1:{self.ports['tenants']}"
        async with make_channel(target, token=DEV_ADMIN_TOKEN) as channel:
            admin: Any = tenants_pb2_grpc.TenantRegistryStub(channel)
            await admin.CreateTenant(
                tenants_pb.CreateTenantRequest(
                    request_id=tenant.tenant_id,
                    tenant_id=tenant.tenant_id,
                    display_name=tenant.tenant_id,
                    # Every webhook of the test must be stored, none held back as a flood.
                    limits=tenants_pb.Limits(inbound_messages_per_minute=1_000_000),
                )
            )
            await admin.AddSenderNumber(
                tenants_pb.AddSenderNumberRequest(tenant_id=tenant.tenant_id, number=tenant.number)
            )
            await admin.SetCredentials(
                tenants_pb.SetCredentialsRequest(
                    tenant_id=tenant.tenant_id,
                    credentials=tenants_pb.TwilioCredentials(
                        account_sid=tenant.account_sid, auth_token=tenant.auth_token
                    ),
                )
            )
        return tenant

    # -- faults

    @contextmanager
    def frozen(self, *pids: int) -> Iterator[None]:
        """SIGSTOP ``pids`` (a service's, or :meth:`postgres_pid`) and their children."""
        with frozen_processes(*pids):
            yield

    def kill_and_restart(self, name: str, down_s: float) -> None:
        self.kill(name)
        time.sleep(down_s)
        self.restart(name)

    # -- what the store and Redis hold

    async def stored(self, tenant_id: str) -> dict[str, int]:
        """MessageSid → how many messages the store holds with it, for ``tenant_id``."""
        engine = make_engine(self.infra.postgres.dsn("conversations"), pool_size=1)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    sa.text(
                        "SELECT provider_sid, count(*) FROM messages WHERE tenant_id = :tenant "
                        "GROUP BY provider_sid"
                    ),
                    {"tenant": tenant_id},
                )
                return {str(sid): int(count) for sid, count in rows}
        finally:
            await engine.dispose()

    async def redis(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.infra.redis.url)

    async def spilled(self) -> int:
        client = await self.redis()
        try:
            return int(await client.xlen(SPILL_STREAM))
        finally:
            await client.aclose()

    async def settled(self, tenant_id: str, timeout_s: float = 90) -> dict[str, int]:
        """What the store holds once the spill is replayed and nothing more arrives."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, int] | None = None
        while time.monotonic() < deadline:
            try:
                stored = await self.stored(tenant_id)
                spilled = await self.spilled()
            except (OSError, sa.exc.DBAPIError):
                stored, spilled = {}, -1
            if spilled == 0 and stored == last:
                return stored
            last = stored
            await asyncio.sleep(1.0)
        raise TimeoutError(f"the spill never drained ({await self.spilled()} left)")
