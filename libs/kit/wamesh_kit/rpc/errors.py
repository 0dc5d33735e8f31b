"""The one place where errors become gRPC status codes, and status codes become errors again.

Servicers raise :mod:`wamesh_kit.errors` exceptions and never set a status by hand. On the
server, :class:`ErrorInterceptor` turns a domain error into its status code with ``str(error)``
as details (and the offending field in the ``wamesh-field`` trailer), a dependency outage into
UNAVAILABLE, and anything else into INTERNAL "internal error": the traceback goes to our log,
never to the caller. On the client, :func:`domain_error_from_rpc_error` maps a failed call
back to the typed error, so a service can re-raise what the service it called raised.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import NoReturn, cast

import grpc
import grpc.aio

from wamesh_kit.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from wamesh_kit.rpc._interceptors import (
    Context,
    Continuation,
    Handler,
    ServerInterceptor,
    wrap_handler,
)

FIELD_METADATA_KEY = "wamesh-field"
INTERNAL_DETAILS = "internal error"
UNAVAILABLE_DETAILS = "a dependency is unavailable, retry later"

STATUS_BY_ERROR: Mapping[type[DomainError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}
_ERROR_BY_STATUS = {code: error for error, code in STATUS_BY_ERROR.items()}
# A failed call to another service that says "try again later" is an outage for our caller too.
_TRANSIENT_RPC_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# Python gives these no OSError subclass of their own, unlike refused or reset connections.
_NETWORK_ERRNOS = frozenset(
    {errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET, errno.EHOSTDOWN, errno.EHOSTUNREACH}
)

_log = logging.getLogger(__name__)


def status_code_for(error: DomainError) -> grpc.StatusCode:
    """The status code of a domain error; a bare or unmapped DomainError is UNKNOWN."""
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return grpc.StatusCode.UNKNOWN


async def abort_with(context: Context, error: DomainError) -> NoReturn:
    """Ends the call with the error's status code, message and field."""
    field = error.field
    # grpc refuses non-ASCII metadata values, which would turn a clean abort into a crash.
    trailers = (
        ((FIELD_METADATA_KEY, field),) if field and field.isascii() and field.isprintable() else ()
    )
    await context.abort(status_code_for(error), str(error), trailers)


def is_infrastructure_error(error: BaseException) -> bool:
    """True when ``error`` means a dependency (network, Postgres, Redis, a peer) is down,
    including our own :class:`Unavailable`, which says so in as many words.

    Optional libraries are looked up in ``sys.modules`` rather than imported: an exception of
    a library's class can only exist once that library is loaded, so nothing needs importing.
    """
    if isinstance(error, Unavailable):
        return True
    if isinstance(error, OSError):
        return _is_network_failure(error)
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code() in _TRANSIENT_RPC_CODES
    if isinstance(error, _loaded("redis.exceptions", "ConnectionError", "TimeoutError")):
        return True
    if isinstance(error, _loaded("sqlalchemy.exc", "OperationalError", "InterfaceError")):
        return True
    if isinstance(error, _loaded("sqlalchemy.exc", "DBAPIError")):
        return bool(getattr(error, "connection_invalidated", False))
    asyncpg_errors = _loaded(
        "asyncpg.exceptions",
        "ConnectionDoesNotExistError",
        "CannotConnectNowError",
        "PostgresConnectionError",
    )
    return isinstance(error, asyncpg_errors)


def _is_network_failure(error: OSError) -> bool:
    """Only a failure to reach or keep talking to a peer; any other OSError (a missing file,
    a refused permission) is a bug, which retrying would only repeat."""
    # TimeoutError covers asyncio.TimeoutError (since 3.11) and socket.timeout.
    if isinstance(error, ConnectionError | TimeoutError | socket.gaierror):
        return True
    if error.errno in _NETWORK_ERRNOS:
        return True
    # asyncio's create_connection, when each of a host's addresses failed in its own way.
    return error.errno is None and str(error).startswith("Multiple exceptions: ")


def _loaded(module: str, *names: str) -> tuple[type[BaseException], ...]:
    loaded = sys.modules.get(module)
    if loaded is None:
        return ()
    return tuple(getattr(loaded, name) for name in names if hasattr(loaded, name))


class ErrorInterceptor(ServerInterceptor):
    """Maps whatever a servicer raises to a status; place it innermost, next to the servicer."""

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED (its stubs omit None)
            return handler
        method = handler_call_details.method
        return wrap_handler(handler, lambda context: _mapping_errors(method, context))


@asynccontextmanager
async def _mapping_errors(method: str, context: Context) -> AsyncIterator[None]:
    try:
        yield
    except grpc.aio.AbortError:
        raise  # the status is already sent
    except DomainError as error:
        await abort_with(context, error)
    except Exception as error:
        extra = {"rpc_method": method, "error_type": type(error).__name__}
        if is_infrastructure_error(error):
            _log.warning("rpc failed: a dependency is unavailable", exc_info=error, extra=extra)
            await context.abort(grpc.StatusCode.UNAVAILABLE, UNAVAILABLE_DETAILS)
        else:
            _log.error("rpc failed with an unexpected error", exc_info=error, extra=extra)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_DETAILS)


def domain_error_from_rpc_error(err: grpc.aio.AioRpcError) -> DomainError | None:
    """The domain error a failed call stands for, or None (e.g. DEADLINE_EXCEEDED, INTERNAL).

    Use it to re-raise a peer's typed error: ``raise domain_error_from_rpc_error(e) or e``.
    """
    error_class = _ERROR_BY_STATUS.get(err.code())
    if error_class is None:
        return None
    field = _trailer(err, FIELD_METADATA_KEY)
    message = err.details() or ""
    if field and message.startswith(f"{field}: "):  # DomainError.__str__ prefixed it
        message = message[len(field) + 2 :]
    return error_class(message, field=field)


def _trailer(err: grpc.aio.AioRpcError, key: str) -> str | None:
    # The stubs call the entries _Metadatum; grpc.aio yields (key, value) pairs.
    entries = cast("Iterable[tuple[str, str | bytes]]", err.trailing_metadata() or ())
    for name, value in entries:
        if name == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
