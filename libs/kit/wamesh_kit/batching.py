"""Group commit: concurrent single calls travel together as one batch call.

A call goes out at once while fewer than ``max_in_flight`` batches are on the wire, so an
idle caller gains no latency; under load, what arrives while those are in flight leaves
together in the next batch. Worth it where a call's fixed cost (an RPC, a Redis round trip)
is larger than the work per item. One batch in flight is the default: more in flight make
smaller batches, each paying the fixed cost again (docs/performance.md has the figures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from wamesh_kit.alarms import Alarms

Item = TypeVar("Item")
Result = TypeVar("Result")


class Full(Exception):
    """``max_waiting`` items wait already: the callee is stalled, not busy; do without it."""


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[Sequence[Result]]],
        *,
        max_batch: int = 200,
        max_in_flight: int = 1,
        max_waiting: int | None = None,
        alarms: Alarms | None = None,
    ) -> None:
        """``send(items)`` returns one result per item, in order, or raises for all. With
        ``max_waiting``, a submit that would make more items wait raises :class:`Full`."""
        self._send_batch = send
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._max_waiting = max_waiting
        self._alarms = alarms or Alarms()
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()  # strong references while they run

    async def submit(self, item: Item, *, timeout_s: float | None = None) -> Result:
        """The result for ``item``, or the exception its batch raised; TimeoutError after
        ``timeout_s`` (give or take the alarms' resolution). An item given up while it
        waited is never sent; one given up in flight may still be done by the batch, so
        ``send`` must be idempotent to use it."""
        if self._max_waiting is not None and len(self._waiting) >= self._max_waiting:
            self._waiting = [waiter for waiter in self._waiting if not waiter[1].done()]
            if len(self._waiting) >= self._max_waiting:
                raise Full(f"{len(self._waiting)} items wait already")
        answer: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        self._send_what_can_go()
        if timeout_s is None:
            return await answer
        # On expiry the answer fails: the batch then sees it done and passes it over.
        alarm = self._alarms.set(timeout_s, lambda: _expire(answer))
        try:
            return await answer
        finally:
            self._alarms.clear(alarm)

    def _send_what_can_go(self) -> None:
        while self._waiting and self._in_flight < self._max_in_flight:
            # Callers that gave up while waiting are passed over, not sent.
            batch = [waiter for waiter in self._waiting[: self._max_batch] if not waiter[1].done()]
            del self._waiting[: self._max_batch]
            if not batch:
                continue
            self._in_flight += 1
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._send_batch([item for item, _ in batch])
            if len(results) != len(batch):
                raise ValueError(f"{len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            self._in_flight -= 1
            for _, answer in batch:
                answer.cancel()
            raise
        except Exception as error:  # the batch's failure is each item's failure
            self._next_batch_goes()
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            return
        self._next_batch_goes()
        for (_, answer), result in zip(batch, results, strict=True):  # lengths checked above
            if not answer.done():
                answer.set_result(result)

    def _next_batch_goes(self) -> None:
        """Send what waited before this batch's callers wake: they then answer their own
        callers while the next batch is already on its way, where the store sat idle for
        as long as a returning batch of webhooks took ingress to answer."""
        self._in_flight -= 1
        self._send_what_can_go()


def _expire(answer: asyncio.Future[Result]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError("given up before its batch answered"))
