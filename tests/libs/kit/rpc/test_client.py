from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import grpc
import pytest

from tests.libs.kit.rpc.example_server import (
    ADMIN_TOKEN,
    JWT_SECRET,
    SERVICE_NAME,
    NoteServicer,
    method,
    notes_pb2,
    notes_pb2_grpc,
)
from wamesh_kit.rpc.auth import bearer_metadata, mint_tenant_token
from wamesh_kit.rpc.client import RETRY_POLICY, dns_target, make_channel, service_config
from wamesh_kit.rpc.server import GrpcService


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("127.0.0.1:50051", "dns:///127.0.0.1:50051"),
        ("tenants:50051", "dns:///tenants:50051"),
        ("dns:///tenants.wamesh.svc:50051", "dns:///tenants.wamesh.svc:50051"),
        ("unix:///run/wamesh.sock", "unix:///run/wamesh.sock"),
        ("ipv4:10.0.0.1:50051,10.0.0.2:50051", "ipv4:10.0.0.1:50051,10.0.0.2:50051"),
    ],
)
def test_plain_targets_become_dns_targets(target: str, expected: str) -> None:
    assert dns_target(target) == expected


def test_service_config_retries_only_idempotent_methods() -> None:
    config = service_config({method("FlakyRead"), "wamesh.testing.v1.Other"})

    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    [method_config] = config["methodConfig"]
    assert method_config["name"] == [
        {"service": SERVICE_NAME, "method": "FlakyRead"},
        {"service": "wamesh.testing.v1.Other"},
    ]
    assert method_config["retryPolicy"] == RETRY_POLICY
    assert RETRY_POLICY["maxAttempts"] == 4
    assert RETRY_POLICY["retryableStatusCodes"] == ["UNAVAILABLE"]


def test_service_config_without_idempotent_methods_has_no_retry_policy() -> None:
    config = service_config()

    assert config == {"loadBalancingConfig": [{"round_robin": {}}]}


def test_service_config_refuses_a_nameless_method() -> None:
    with pytest.raises(ValueError, match="not a gRPC service or method"):
        service_config({"/"})


async def test_channel_sends_its_token(service: GrpcService) -> None:
    async with make_channel(f"127.0.0.1:{service.port}", token=ADMIN_TOKEN) as channel:
        who = await notes_pb2_grpc.NoteServiceStub(channel).WhoAmI(notes_pb2.WhoAmIRequest())

    assert who.kind == "admin"


async def test_a_call_s_own_token_wins_over_the_channel_s(service: GrpcService) -> None:
    tenant_token = mint_tenant_token(JWT_SECRET, "t1", timedelta(hours=1))
    async with make_channel(f"127.0.0.1:{service.port}", token=tenant_token) as channel:
        stub = notes_pb2_grpc.NoteServiceStub(channel)
        request = notes_pb2.GetNoteRequest(tenant_id="t2", note_id="n1")

        note = await stub.GetNote(request, metadata=bearer_metadata(ADMIN_TOKEN))

    assert note.tenant_id == "t2"


async def test_call_without_timeout_gets_the_default_deadline(
    service: GrpcService, rpc_error: Callable[..., Any]
) -> None:
    channel = make_channel(f"127.0.0.1:{service.port}", token=ADMIN_TOKEN, default_timeout=0.2)
    async with channel:
        stub = notes_pb2_grpc.NoteServiceStub(channel)

        error = await rpc_error(stub.SlowCall(notes_pb2.SlowCallRequest(duration_ms=3000)))

    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_explicit_timeout_overrides_the_default(service: GrpcService) -> None:
    channel = make_channel(f"127.0.0.1:{service.port}", token=ADMIN_TOKEN, default_timeout=0.05)
    async with channel:
        stub = notes_pb2_grpc.NoteServiceStub(channel)

        reply = await stub.SlowCall(notes_pb2.SlowCallRequest(duration_ms=300), timeout=30)

    assert reply.slept_ms == 300


async def test_idempotent_method_is_retried_and_the_other_is_not(
    service: GrpcService, servicer: NoteServicer, rpc_error: Callable[..., Any]
) -> None:
    channel = make_channel(
        f"127.0.0.1:{service.port}",
        token=ADMIN_TOKEN,
        idempotent_methods={method("FlakyRead")},
    )
    async with channel:
        stub = notes_pb2_grpc.NoteServiceStub(channel)

        read = await stub.FlakyRead(notes_pb2.FlakyRequest(key="read"))
        write_error = await rpc_error(stub.FlakyWrite(notes_pb2.FlakyRequest(key="write")))

    assert read.attempts == 2
    assert servicer.attempts["read"] == 2
    assert write_error.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts["write"] == 1


async def test_a_whole_service_can_be_marked_idempotent(
    service: GrpcService, servicer: NoteServicer
) -> None:
    channel = make_channel(
        f"127.0.0.1:{service.port}", token=ADMIN_TOKEN, idempotent_methods={SERVICE_NAME}
    )
    async with channel:
        reply = await notes_pb2_grpc.NoteServiceStub(channel).FlakyWrite(
            notes_pb2.FlakyRequest(key="write")
        )

    assert reply.attempts == 2
    assert servicer.attempts["write"] == 2


def test_default_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        make_channel("127.0.0.1:1", default_timeout=0)
