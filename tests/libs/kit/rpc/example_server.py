"""The example NoteService of the rpc tests, served by the shared bootstrap.

The tests import it to serve in-process, and the SIGTERM test runs it as a process:

    WAMESH_GRPC_LISTEN=127.0.0.1:0 python -m tests.libs.kit.rpc.example_server

It prints ``port <n>`` once serving, then one line per event the tests wait for
(``slow-call started``, ``draining``, ``slow-call finished``), and exits 0 after draining.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from wamesh_kit.errors import (
    InvalidArgument,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from wamesh_kit.rpc.auth import (
    Access,
    current_principal,
    require_tenant_access,
    requires,
)
from wamesh_kit.rpc.server import GrpcService, Service
from wamesh_kit.settings import ServiceSettings

# grpc finds the .proto through sys.path, where pytest and `python -m` from the root put the
# repository.
notes_pb2, notes_pb2_grpc = grpc.protos_and_services(
    "tests/libs/kit/rpc/protos/wamesh_testing/v1/notes.proto"
)

SERVICE_NAME = "wamesh.testing.v1.NoteService"
ADMIN_TOKEN = "test-admin-token-3f9a"
INTERNAL_TOKEN = "test-internal-token-7c1e"
JWT_SECRET = "test-jwt-secret-5b2d8e0a4c6f1e3d9b7a5c2e0f8d6b4a"
ANY_CALLER = Access.ADMIN | Access.INTERNAL | Access.TENANT


def method(name: str) -> str:
    return f"/{SERVICE_NAME}/{name}"


def example_settings(**overrides: Any) -> ServiceSettings:
    """Settings on loopback with the tests' tokens; WAMESH_* variables cannot override them."""
    values: dict[str, Any] = {
        "grpc_listen": "127.0.0.1:0",
        # Off unless a test asks: closing the /metrics server takes up to half a second.
        "metrics_listen": "",
        "shutdown_grace_s": 5.0,
        "admin_token": SecretStr(ADMIN_TOKEN),
        "internal_token": SecretStr(INTERNAL_TOKEN),
        "jwt_secret": SecretStr(JWT_SECRET),
    }
    return ServiceSettings(**{**values, **overrides})


def _raise(kind: str) -> None:
    """Raises the exception named ``kind``; each message holds text a caller must never see."""
    if kind == "plain":
        raise RuntimeError("secret detail: dsn=postgresql://app:hunter2@db/app")
    if kind == "connection_refused":
        raise ConnectionRefusedError(111, "Connect call failed ('10.0.0.7', 5432)")
    if kind == "timeout":
        raise TimeoutError("secret detail: timed out reading from 10.0.0.9")
    if kind == "dns":
        raise socket.gaierror(socket.EAI_NONAME, "secret detail: postgres.10.0.0.9 not known")
    if kind == "file_not_found":
        raise FileNotFoundError(2, "No such file or directory", "/run/secret detail/hunter2")
    if kind == "permission":
        raise PermissionError(13, "Permission denied", "/run/secret detail/hunter2")
    if kind == "redis":
        import redis.exceptions

        raise redis.exceptions.ConnectionError("Error 111 connecting to 10.0.0.9:6379")
    if kind == "sqlalchemy":
        import sqlalchemy.exc

        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, OSError("server closed"))
    if kind == "asyncpg":
        import asyncpg.exceptions  # type: ignore[import-untyped]  # asyncpg ships no types

        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
    if kind == "not_found":
        raise NotFound("note n9 not found")
    if kind == "invalid_argument":
        raise InvalidArgument("must be at most 280 characters", field="text")
    raise ValueError(f"unknown kind {kind!r}")


class NoteServicer:
    """Notes of two tenants in memory; ``announce`` reports events (the process prints them).

    No generated base class: grpc.protos_and_services builds it at run time, out of a type
    checker's sight, and add_NoteServiceServicer_to_server needs only the methods.
    """

    def __init__(self, announce: Callable[[str], None] = lambda _: None) -> None:
        self.notes = {
            ("t1", "n1"): notes_pb2.Note(tenant_id="t1", note_id="n1", text="one"),
            ("t1", "n2"): notes_pb2.Note(tenant_id="t1", note_id="n2", text="two"),
            ("t2", "n1"): notes_pb2.Note(tenant_id="t2", note_id="n1", text="other tenant"),
        }
        self.attempts: Counter[str] = Counter()
        self._announce = announce

    @requires(ANY_CALLER)
    async def GetNote(self, request: Any, context: Any) -> Any:
        require_tenant_access(request.tenant_id)
        if not request.note_id:
            raise InvalidArgument("must not be empty", field="note_id")
        note = self.notes.get((request.tenant_id, request.note_id))
        if note is None:
            raise NotFound(f"note {request.note_id} not found")
        return note

    @requires(Access.ADMIN)
    async def CreateNote(self, request: Any, context: Any) -> Any:
        note = notes_pb2.Note(
            tenant_id=request.tenant_id, note_id=request.note_id, text=request.text
        )
        self.notes[(request.tenant_id, request.note_id)] = note
        return note

    @requires(ANY_CALLER)
    async def ListNotes(self, request: Any, context: Any) -> AsyncIterator[Any]:
        require_tenant_access(request.tenant_id)
        for (tenant_id, _), note in sorted(self.notes.items()):
            if tenant_id == request.tenant_id:
                yield note
        raise NotFound("no more notes")

    @requires(Access.ADMIN | Access.INTERNAL)
    async def SlowCall(self, request: Any, context: Any) -> Any:
        self._announce("slow-call started")
        await asyncio.sleep(request.duration_ms / 1000)
        self._announce("slow-call finished")
        return notes_pb2.SlowCallResponse(slept_ms=request.duration_ms)

    @requires(Access.ADMIN)
    async def Explode(self, request: Any, context: Any) -> Any:
        _raise(request.kind)

    @requires(Access.ADMIN | Access.INTERNAL)
    async def FlakyRead(self, request: Any, context: Any) -> Any:
        return self._flaky(request.key)

    @requires(Access.ADMIN | Access.INTERNAL)
    async def FlakyWrite(self, request: Any, context: Any) -> Any:
        return self._flaky(request.key)

    def _flaky(self, key: str) -> Any:
        self.attempts[key] += 1
        if self.attempts[key] == 1:
            raise Unavailable("warming up, retry")
        return notes_pb2.FlakyResponse(attempts=self.attempts[key])

    @requires(Access.PUBLIC)
    async def WhoAmI(self, request: Any, context: Any) -> Any:
        try:
            principal = current_principal()
        except Unauthenticated:
            return notes_pb2.WhoAmIResponse(kind="anonymous")
        return notes_pb2.WhoAmIResponse(kind=principal.kind, tenant_id=principal.tenant_id)

    async def Undeclared(self, request: Any, context: Any) -> Any:
        return notes_pb2.WhoAmIResponse(kind="this must never run")


def build_service(
    settings: ServiceSettings,
    servicer: NoteServicer,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
) -> GrpcService:
    service = Service(
        descriptor=notes_pb2.DESCRIPTOR.services_by_name["NoteService"],
        servicer=servicer,
        add_to_server=notes_pb2_grpc.add_NoteServiceServicer_to_server,
    )
    return GrpcService(
        settings,
        [service],
        registry=registry or CollectorRegistry(),
        tracer_provider=tracer_provider,
    )


def _say(line: str) -> None:
    print(line, flush=True)


async def main() -> None:
    service = build_service(ServiceSettings(), NoteServicer(announce=_say))
    port = await service.start()
    _say(f"port {port}")
    await service.serve_until_signal(on_draining=lambda: _say("draining"))


if __name__ == "__main__":
    asyncio.run(main())
