from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.libs.kit.rpc.example_server import (
    ADMIN_TOKEN,
    INTERNAL_TOKEN,
    JWT_SECRET,
    NoteServicer,
    method,
    notes_pb2,
)
from wamesh_kit.errors import PermissionDenied, Unauthenticated
from wamesh_kit.rpc.auth import (
    Access,
    Authenticator,
    AuthInterceptor,
    Principal,
    bearer_metadata,
    bearer_token,
    declared_access,
    mint_tenant_token,
)
from wamesh_kit.rpc.server import GrpcService, Service

HOUR = timedelta(hours=1)


def tenant(tenant_id: str, ttl: timedelta = HOUR, secret: str = JWT_SECRET) -> list[Any]:
    return bearer_metadata(mint_tenant_token(secret, tenant_id, ttl))


def get_note(tenant_id: str, note_id: str = "n1") -> Any:
    return notes_pb2.GetNoteRequest(tenant_id=tenant_id, note_id=note_id)


@pytest.mark.parametrize(
    ("metadata", "details"),
    [
        pytest.param(None, "missing bearer token", id="no-token"),
        pytest.param(bearer_metadata("not-the-admin-token"), "not valid", id="wrong-token"),
        pytest.param([("authorization", ADMIN_TOKEN)], "missing bearer token", id="no-scheme"),
        pytest.param(tenant("t1", ttl=-timedelta(seconds=5)), "expired", id="expired-jwt"),
        pytest.param(tenant("t1", secret="x" * 40), "not valid", id="jwt-other-secret"),
    ],
)
async def test_bad_credentials_are_unauthenticated(
    service: GrpcService,
    stub: Any,
    rpc_error: Callable[..., Any],
    metadata: Any,
    details: str,
) -> None:
    error = await rpc_error(stub.CreateNote(notes_pb2.CreateNoteRequest(), metadata=metadata))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert details in (error.details() or "")


async def test_tenant_token_on_an_admin_method_is_permission_denied(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any], servicer: NoteServicer
) -> None:
    request = notes_pb2.CreateNoteRequest(tenant_id="t1", note_id="n3", text="x")

    error = await rpc_error(stub.CreateNote(request, metadata=tenant("t1")))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert ("t1", "n3") not in servicer.notes


async def test_tenant_token_reading_another_tenant_is_permission_denied(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any]
) -> None:
    error = await rpc_error(stub.GetNote(get_note("t2"), metadata=tenant("t1")))

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "other tenant" not in (error.details() or "")


async def test_tenant_token_reads_its_own_tenant(service: GrpcService, stub: Any) -> None:
    note = await stub.GetNote(get_note("t1"), metadata=tenant("t1"))

    assert (note.tenant_id, note.text) == ("t1", "one")


async def test_tenant_token_cannot_stream_another_tenant(
    service: GrpcService, stub: Any, read_stream: Callable[..., Any]
) -> None:
    call = stub.ListNotes(notes_pb2.ListNotesRequest(tenant_id="t2"), metadata=tenant("t1"))

    received, error = await read_stream(call)

    assert received == []
    assert error is not None
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("token", [ADMIN_TOKEN, INTERNAL_TOKEN], ids=["admin", "internal"])
async def test_admin_and_internal_read_any_tenant(
    service: GrpcService, stub: Any, token: str
) -> None:
    for tenant_id in ("t1", "t2"):
        note = await stub.GetNote(get_note(tenant_id), metadata=bearer_metadata(token))
        assert note.tenant_id == tenant_id


async def test_internal_token_on_an_admin_method_is_permission_denied(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any]
) -> None:
    error = await rpc_error(
        stub.CreateNote(notes_pb2.CreateNoteRequest(), metadata=bearer_metadata(INTERNAL_TOKEN))
    )

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("token", [ADMIN_TOKEN, INTERNAL_TOKEN], ids=["admin", "internal"])
async def test_method_without_a_policy_is_refused_even_to_admin(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any], token: str
) -> None:
    error = await rpc_error(
        stub.Undeclared(notes_pb2.WhoAmIRequest(), metadata=bearer_metadata(token))
    )

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_method_without_a_policy_asks_anonymous_callers_to_authenticate(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any]
) -> None:
    error = await rpc_error(stub.Undeclared(notes_pb2.WhoAmIRequest()))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    ("metadata", "kind", "tenant_id"),
    [
        pytest.param(None, "anonymous", "", id="anonymous"),
        pytest.param(bearer_metadata("garbage"), "anonymous", "", id="bad-token"),
        pytest.param(tenant("t7"), "tenant", "t7", id="tenant"),
        pytest.param(bearer_metadata(INTERNAL_TOKEN), "internal", "", id="internal"),
    ],
)
async def test_public_method_sees_the_principal_when_there_is_one(
    service: GrpcService, stub: Any, metadata: Any, kind: str, tenant_id: str
) -> None:
    who = await stub.WhoAmI(notes_pb2.WhoAmIRequest(), metadata=metadata)

    assert (who.kind, who.tenant_id) == (kind, tenant_id)


async def test_health_needs_no_credentials(
    service: GrpcService, raw_channel: grpc.aio.Channel
) -> None:
    health = health_pb2_grpc.HealthStub(raw_channel)

    reply = await health.Check(health_pb2.HealthCheckRequest(service=""))

    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_authorize_decides_without_a_server() -> None:
    authenticator = Authenticator(
        admin_token=ADMIN_TOKEN, internal_token=INTERNAL_TOKEN, jwt_secret=JWT_SECRET
    )
    auth = AuthInterceptor(authenticator, {method("GetNote"): Access.TENANT})

    assert auth.authorize(method("GetNote"), tenant("t1")) == Principal("tenant", "t1")
    with pytest.raises(PermissionDenied):
        auth.authorize(method("GetNote"), bearer_metadata(ADMIN_TOKEN))
    with pytest.raises(Unauthenticated):
        auth.authorize(method("GetNote"), None)
    assert auth.authorize("/grpc.health.v1.Health/Check", None) is None


def test_empty_configured_token_never_matches_an_empty_bearer() -> None:
    authenticator = Authenticator(admin_token="", internal_token="", jwt_secret=JWT_SECRET)

    with pytest.raises(Unauthenticated):
        authenticator.identify("")


def test_short_jwt_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Authenticator(admin_token="a", internal_token="b", jwt_secret="short")


def test_jwt_without_tenant_claim_is_unauthenticated() -> None:
    import jwt

    authenticator = Authenticator(admin_token="a", internal_token="b", jwt_secret=JWT_SECRET)
    token = jwt.encode({"exp": 4102444800}, JWT_SECRET, algorithm="HS256")

    with pytest.raises(Unauthenticated):
        authenticator.identify(token)


def test_bearer_token_parsing() -> None:
    assert bearer_token([("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", "bearer  abc ")]) == "abc"
    assert bearer_token([("authorization", b"Bearer abc")]) == "abc"
    assert bearer_token([("authorization", "Basic abc")]) is None
    assert bearer_token([("x-other", "Bearer abc")]) is None
    assert bearer_token(None) is None


def test_policies_come_from_decorators_and_reject_unknown_methods() -> None:
    from tests.libs.kit.rpc.example_server import notes_pb2_grpc

    descriptor = notes_pb2.DESCRIPTOR.services_by_name["NoteService"]
    declared = declared_access(NoteServicer())
    add = notes_pb2_grpc.add_NoteServiceServicer_to_server

    assert declared["CreateNote"] == Access.ADMIN
    assert "Undeclared" not in declared
    policies = Service(descriptor, NoteServicer(), add).policies()
    assert policies[method("WhoAmI")] == Access.PUBLIC
    with pytest.raises(ValueError, match="no method GetNotes"):
        Service(descriptor, NoteServicer(), add, access={"GetNotes": Access.ADMIN}).policies()
