"""Plumbing shared by the interceptors: typed bases and handler/call-details wrapping.

grpc's stubs (grpc-stubs) declare the aio interceptor bases as generic, while at runtime they
are plain ABCs that cannot be subscripted, so the bases are chosen under ``TYPE_CHECKING``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import grpc.aio

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler]]"
# What an interceptor runs around one call of a behavior; it may abort or translate errors.
Around: TypeAlias = "Callable[[Context], AbstractAsyncContextManager[None]]"
CallDetails: TypeAlias = "grpc.aio.ClientCallDetails"

if TYPE_CHECKING:
    ServerInterceptor: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
    UnaryUnaryClientInterceptor: TypeAlias = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    UnaryStreamClientInterceptor: TypeAlias = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    StreamUnaryClientInterceptor: TypeAlias = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    StreamStreamClientInterceptor: TypeAlias = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:
    ServerInterceptor = grpc.aio.ServerInterceptor
    UnaryUnaryClientInterceptor = grpc.aio.UnaryUnaryClientInterceptor
    UnaryStreamClientInterceptor = grpc.aio.UnaryStreamClientInterceptor
    StreamUnaryClientInterceptor = grpc.aio.StreamUnaryClientInterceptor
    StreamStreamClientInterceptor = grpc.aio.StreamStreamClientInterceptor

ClientInterceptor: TypeAlias = (
    "UnaryUnaryClientInterceptor | UnaryStreamClientInterceptor"
    " | StreamUnaryClientInterceptor | StreamStreamClientInterceptor"
)

_FACTORIES = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def wrap_handler(handler: Handler, around: Around) -> Handler:
    """The same handler, with every call of its behavior run inside ``around(context)``.

    Servicers must be async (grpc.aio): a wrapped behavior is always awaited on the loop.
    """
    kind = (handler.request_streaming, handler.response_streaming)
    behavior: Callable[..., Any] | None = {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[kind]
    if behavior is None:
        raise TypeError(f"a grpc {kind} handler without a behavior")
    wrap = _streaming if handler.response_streaming else _unary
    return _FACTORIES[kind](
        wrap(behavior, around),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _unary(behavior: Callable[..., Any], around: Around) -> Callable[[Any, Context], Any]:
    async def call(request: Any, context: Context) -> Any:
        async with around(context):
            return await behavior(request, context)

    return call


def _streaming(
    behavior: Callable[..., Any], around: Around
) -> Callable[[Any, Context], AsyncIterator[Any]]:
    # Always an async generator, whatever the inner style: the OpenTelemetry interceptor
    # iterates the behavior it wraps, and grpc.aio accepts both styles from the outside.
    async def call(request: Any, context: Context) -> AsyncIterator[Any]:
        async with around(context):
            result = behavior(request, context)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    yield response
            else:  # reader/writer style: the behavior writes with context.write()
                await result

    return call


def client_interceptors(transform: Callable[[CallDetails], CallDetails]) -> list[ClientInterceptor]:
    """One client interceptor per call kind, each passing the call on with ``transform``-ed
    details (grpc.aio files an interceptor under one kind only, so one class cannot do all)."""

    class _UnaryUnary(UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(
            self, continuation: Any, client_call_details: CallDetails, request: Any
        ) -> Any:
            return await continuation(transform(client_call_details), request)

    class _UnaryStream(UnaryStreamClientInterceptor):
        async def intercept_unary_stream(
            self, continuation: Any, client_call_details: CallDetails, request: Any
        ) -> Any:
            return await continuation(transform(client_call_details), request)

    class _StreamUnary(StreamUnaryClientInterceptor):
        async def intercept_stream_unary(
            self, continuation: Any, client_call_details: CallDetails, request_iterator: Any
        ) -> Any:
            return await continuation(transform(client_call_details), request_iterator)

    class _StreamStream(StreamStreamClientInterceptor):
        async def intercept_stream_stream(
            self, continuation: Any, client_call_details: CallDetails, request_iterator: Any
        ) -> Any:
            return await continuation(transform(client_call_details), request_iterator)

    return [_UnaryUnary(), _UnaryStream(), _StreamUnary(), _StreamStream()]


def replace_details(
    details: CallDetails,
    *,
    timeout: float | None = None,
    metadata: grpc.aio.Metadata | None = None,
) -> CallDetails:
    """A copy of ``details`` with a new timeout and/or metadata (``None`` keeps the old)."""
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout if timeout is None else timeout,
        details.metadata if metadata is None else metadata,
        details.credentials,
        details.wait_for_ready,
    )


def split_method(full_method: str) -> tuple[str, str]:
    """``"/pkg.Svc/Method"`` → ``("pkg.Svc", "Method")``."""
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method
