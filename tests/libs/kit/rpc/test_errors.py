from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any, cast

import grpc
import grpc.aio
import pytest

from tests.libs.kit.rpc.example_server import ADMIN_TOKEN, notes_pb2
from wamesh_kit.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from wamesh_kit.rpc.auth import bearer_metadata
from wamesh_kit.rpc.errors import (
    FIELD_METADATA_KEY,
    INTERNAL_DETAILS,
    STATUS_BY_ERROR,
    domain_error_from_rpc_error,
    is_infrastructure_error,
    status_code_for,
)
from wamesh_kit.rpc.server import GrpcService

ADMIN = bearer_metadata(ADMIN_TOKEN)
LEAK_MARKERS = ("Traceback", 'File "', "hunter2", "10.0.0.", "secret detail")


def assert_no_leak(error: grpc.aio.AioRpcError) -> None:
    # The stubs call the entries _Metadatum; grpc.aio yields (key, value) pairs.
    trailers = cast("Iterable[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    exposed = [error.details() or ""]
    exposed += [str(value) for _, value in trailers]
    for text in exposed:
        for marker in LEAK_MARKERS:
            assert marker not in text, f"{marker!r} leaked to the caller in {text!r}"


async def test_not_found_arrives_as_not_found(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any]
) -> None:
    error = await rpc_error(
        stub.GetNote(notes_pb2.GetNoteRequest(tenant_id="t1", note_id="n9"), metadata=ADMIN)
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "note n9 not found"
    assert_no_leak(error)


async def test_invalid_argument_names_the_field_in_details_and_trailer(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any]
) -> None:
    error = await rpc_error(
        stub.GetNote(notes_pb2.GetNoteRequest(tenant_id="t1", note_id=""), metadata=ADMIN)
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "note_id: must not be empty"
    assert (FIELD_METADATA_KEY, "note_id") in tuple(error.trailing_metadata())
    assert_no_leak(error)


# A missing file or a refused permission is an OSError too, but a bug: not retried, not UNAVAILABLE.
@pytest.mark.parametrize(
    ("kind", "raised"),
    [
        ("plain", RuntimeError),
        ("file_not_found", FileNotFoundError),
        ("permission", PermissionError),
    ],
)
async def test_a_bug_is_internal_with_a_fixed_message_and_logged_with_traceback(
    service: GrpcService,
    stub: Any,
    rpc_error: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    kind: str,
    raised: type[Exception],
) -> None:
    with caplog.at_level(logging.ERROR, logger="wamesh_kit.rpc.errors"):
        error = await rpc_error(stub.Explode(notes_pb2.ExplodeRequest(kind=kind), metadata=ADMIN))

    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == INTERNAL_DETAILS
    assert_no_leak(error)
    [record] = [r for r in caplog.records if r.name == "wamesh_kit.rpc.errors"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], raised)
    assert getattr(record, "rpc_method", None) == "/wamesh.testing.v1.NoteService/Explode"


@pytest.mark.parametrize(
    "kind", ["connection_refused", "timeout", "dns", "redis", "sqlalchemy", "asyncpg"]
)
async def test_infrastructure_failure_is_unavailable_without_its_text(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any], kind: str
) -> None:
    error = await rpc_error(stub.Explode(notes_pb2.ExplodeRequest(kind=kind), metadata=ADMIN))

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert_no_leak(error)


async def test_domain_error_mid_stream_ends_the_stream_with_its_code(
    service: GrpcService, stub: Any, read_stream: Callable[..., Any]
) -> None:
    call = stub.ListNotes(notes_pb2.ListNotesRequest(tenant_id="t1"), metadata=ADMIN)

    received, error = await read_stream(call)

    assert [note.note_id for note in received] == ["n1", "n2"]
    assert error is not None
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no more notes"


async def test_client_maps_a_failed_call_back_to_the_domain_error(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any]
) -> None:
    error = await rpc_error(
        stub.Explode(notes_pb2.ExplodeRequest(kind="invalid_argument"), metadata=ADMIN)
    )

    domain = domain_error_from_rpc_error(error)

    assert isinstance(domain, InvalidArgument)
    assert domain.field == "text"
    assert domain.message == "must be at most 280 characters"


async def test_client_maps_not_found_and_leaves_internal_unmapped(
    service: GrpcService, stub: Any, rpc_error: Callable[..., Any]
) -> None:
    not_found = await rpc_error(
        stub.Explode(notes_pb2.ExplodeRequest(kind="not_found"), metadata=ADMIN)
    )
    internal = await rpc_error(stub.Explode(notes_pb2.ExplodeRequest(kind="plain"), metadata=ADMIN))

    mapped = domain_error_from_rpc_error(not_found)
    assert isinstance(mapped, NotFound)
    assert mapped.field is None
    assert str(mapped) == "note n9 not found"
    assert domain_error_from_rpc_error(internal) is None


def test_every_domain_error_has_a_distinct_status_code() -> None:
    assert len(set(STATUS_BY_ERROR.values())) == len(STATUS_BY_ERROR) == 8
    assert status_code_for(PermissionDenied("no")) == grpc.StatusCode.PERMISSION_DENIED
    assert status_code_for(Unavailable("down")) == grpc.StatusCode.UNAVAILABLE

    class TenantSuspended(PermissionDenied):
        pass

    assert status_code_for(TenantSuspended("suspended")) == grpc.StatusCode.PERMISSION_DENIED


def test_infrastructure_errors_are_told_from_bugs() -> None:
    import sqlalchemy.exc

    def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "", None)

    def dbapi_error(invalidated: bool) -> sqlalchemy.exc.DBAPIError:
        return sqlalchemy.exc.DBAPIError(
            "SELECT 1", {}, Exception("boom"), connection_invalidated=invalidated
        )

    assert is_infrastructure_error(ConnectionResetError())
    assert is_infrastructure_error(rpc_error(grpc.StatusCode.UNAVAILABLE))
    assert is_infrastructure_error(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED))
    assert is_infrastructure_error(dbapi_error(invalidated=True))
    assert is_infrastructure_error(Unavailable("the tenants service cannot be reached"))
    assert not is_infrastructure_error(dbapi_error(invalidated=False))
    assert not is_infrastructure_error(rpc_error(grpc.StatusCode.NOT_FOUND))
    assert not is_infrastructure_error(ValueError("a bug"))
    assert not is_infrastructure_error(KeyError("a bug"))


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('10.0.0.7', 5432)"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        BrokenPipeError(errno.EPIPE, "Broken pipe"),
        TimeoutError("timed out"),
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
        # asyncio's create_connection, when each of a host's addresses failed in its own way.
        OSError(
            "Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432, 0, 0), "
            "[Errno 111] Connect call failed ('127.0.0.1', 5432)"
        ),
    ],
    ids=repr,
)
def test_a_failure_to_reach_a_peer_is_infrastructure(error: OSError) -> None:
    assert is_infrastructure_error(error)


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(errno.ENOENT, "No such file or directory", "/etc/wamesh/key.pem"),
        PermissionError(errno.EACCES, "Permission denied", "/etc/wamesh/key.pem"),
        IsADirectoryError(errno.EISDIR, "Is a directory", "/etc/wamesh"),
        NotADirectoryError(errno.ENOTDIR, "Not a directory", "/etc/wamesh/key.pem/x"),
        FileExistsError(errno.EEXIST, "File exists", "/tmp/spill"),
        OSError(errno.EBADF, "Bad file descriptor"),
        OSError("a bug of our own"),
    ],
    ids=repr,
)
def test_an_os_error_that_is_not_about_the_network_is_a_bug(error: OSError) -> None:
    assert not is_infrastructure_error(error)
