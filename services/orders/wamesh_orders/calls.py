"""Makes the calls the outbox holds: messages to the dispatcher (EnqueueBatch) and opt-outs to
the conversation store (SetOptOut). Both are idempotent on their keys, so a call made again
after a crash, or by two replicas at once, changes nothing.

The event handler makes the calls its own transaction wrote, so a reply leaves at once; a
loop makes whatever is left (a dispatcher that was down, a replica that died in between).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

from wamesh.dispatch.v1 import dispatch_pb2
from wamesh_kit.background import repeat
from wamesh_kit.errors import Unavailable
from wamesh_orders.metrics import OrdersMetrics
from wamesh_orders.store import ENQUEUE, Call, OrderStore

log = logging.getLogger(__name__)

# The dispatcher's EnqueueBatch limit.
BATCH = 500
# Refusals that no retry can change: the call is dropped (and counted), not retried forever.
REFUSED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
)


class Calls:
    def __init__(
        self,
        store: OrderStore,
        dispatcher: Any,
        conversations: Any,
        metrics: OrdersMetrics,
        timeout_s: float,
    ) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._conversations = conversations
        self._metrics = metrics
        self._timeout_s = timeout_s

    async def make(self, calls: Sequence[Call]) -> None:
        """Makes ``calls`` and forgets them; Unavailable (the calls kept) if a peer cannot be
        reached."""
        done: list[str] = []
        try:
            for call in calls:
                if call.kind != ENQUEUE:
                    await self._opt_out(call)
                    done.append(call.key)
            messages = [call for call in calls if call.kind == ENQUEUE]
            for start in range(0, len(messages), BATCH):
                chunk = messages[start : start + BATCH]
                await self._enqueue(chunk)
                done.extend(call.key for call in chunk)
        finally:
            await self._store.made(done)

    async def flush(self, limit: int = BATCH, *, message_id: str | None = None) -> int:
        """Makes up to ``limit`` of the oldest calls left (of ``message_id``'s turn only, if
        given); how many there were."""
        pending = await self._store.pending_calls(limit, message_id=message_id)
        if pending:
            await self.make(pending)
        return len(pending)

    async def run(self, stop: asyncio.Event, interval_s: float) -> None:
        """Makes what the outbox holds, every ``interval_s`` (at once while a batch was full)."""

        async def batch() -> bool:
            return await self.flush() == BATCH

        await repeat(batch, stop, interval_s=interval_s, name="outbox calls")

    async def _opt_out(self, call: Call) -> None:
        try:
            await self._conversations.SetOptOut(call.request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            self._fail(error, [call])

    async def _enqueue(self, calls: Sequence[Call]) -> None:
        requests = [c.request for c in calls if isinstance(c.request, dispatch_pb2.EnqueueRequest)]
        try:
            await self._dispatcher.EnqueueBatch(
                dispatch_pb2.EnqueueBatchRequest(jobs=requests), timeout=self._timeout_s
            )
            self._metrics.messages_enqueued.inc(len(calls))
            return
        except grpc.aio.AioRpcError as error:
            if error.code() not in REFUSED or len(calls) == 1:
                self._fail(error, calls)
                return
        # One bad message refuses the whole batch: send them one by one, so only it is lost.
        for call in calls:
            await self._enqueue([call])

    def _fail(self, error: grpc.aio.AioRpcError, calls: Sequence[Call]) -> None:
        if error.code() in REFUSED:
            for call in calls:
                log.error(
                    "dropping a call its peer refuses",
                    extra={"key": call.key, "kind": call.kind, "code": error.code().name},
                )
            self._metrics.calls_refused.inc(len(calls))
            return
        raise Unavailable(f"{_peer(calls)} cannot be reached ({error.code().name})") from None


def _peer(calls: Sequence[Call]) -> str:
    return "the dispatcher" if calls and calls[0].kind == ENQUEUE else "the conversation store"
