"""Group commit for inbound webhooks: concurrent RecordInbound calls travel as one
RecordInboundBatch.

A webhook is sent at once while fewer than ``max_in_flight`` batches are on the wire, so an
idle ingress adds no latency; under load, what arrives while those are in flight leaves
together in the next batch. One call and one statement then carry many webhooks, which is
where the throughput comes from: per call, gRPC costs more than the write itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc.aio

from wamesh.conversations.v1 import conversations_pb2 as pb


class InboundBatcher:
    def __init__(
        self, stub: Any, *, timeout_s: float, max_batch: int = 200, max_in_flight: int = 2
    ) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[pb.RecordInboundRequest, asyncio.Future[Any]]] = []
        self._in_flight: set[asyncio.Task[None]] = set()

    async def record(self, request: pb.RecordInboundRequest) -> pb.RecordInboundResult:
        """The store's answer for ``request``; AioRpcError if the whole call failed."""
        answer: asyncio.Future[pb.RecordInboundResult] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, answer))
        self._send_what_can_go()
        return await answer

    def _send_what_can_go(self) -> None:
        while self._waiting and len(self._in_flight) < self._max_in_flight:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            task = asyncio.create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._send_what_can_go()

    async def _send(self, batch: list[tuple[pb.RecordInboundRequest, asyncio.Future[Any]]]) -> None:
        try:
            response = await self._stub.RecordInboundBatch(
                pb.RecordInboundBatchRequest(requests=[request for request, _ in batch]),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as error:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            return
        except asyncio.CancelledError:
            for _, answer in batch:
                answer.cancel()
            raise
        for (_, answer), result in zip(batch, response.results, strict=True):
            if not answer.done():
                answer.set_result(result)
