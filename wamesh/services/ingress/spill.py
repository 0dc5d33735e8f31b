"""When the conversation store is down, verified webhooks wait in a Redis stream.

Twilio does not retry a 5xx by default, so ingress does not answer one while it can still
keep the webhook: it appends the store request to the spill stream, answers 200, and the
replayer stores spilled webhooks in arrival order as soon as the store answers again. A
replayed request is idempotent (MessageSid, provider SID), so a replay after a crash
between storing and deleting the entry stores nothing twice. One replayer runs at a time
across replicas (a Redis lease), which keeps arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio
import redis.asyncio as aioredis
from google.protobuf.message import DecodeError, Message
from redis.exceptions import RedisError

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.libs.keys import dead_letter_stream, global_key, stream_key
from wamesh.libs.rpc.errors import is_infrastructure_error
from wamesh.libs.streams import FIELD_PAYLOAD, FIELD_TYPE, encode_entry

log = logging.getLogger(__name__)

SPILL_STREAM = stream_key("ingress-spill")
REPLAYER_LEASE = global_key("ingress", "spill-replayer")
LEASE_MS = 10_000
_TYPES: dict[str, type[Message]] = {
    pb.RecordInboundRequest.DESCRIPTOR.full_name: pb.RecordInboundRequest,
    pb.RecordStatusRequest.DESCRIPTOR.full_name: pb.RecordStatusRequest,
}

Store = Callable[[Message], Awaitable[None]]


async def spill(redis: aioredis.Redis, request: Message) -> bool:
    """Append ``request`` to the spill stream; True once Redis has it."""
    try:
        await redis.xadd(SPILL_STREAM, encode_entry(request))  # type: ignore[arg-type]
    except RedisError as error:
        log.error("could not spill a webhook", extra={"error": str(error)})
        return False
    return True


class SpillReplayer:
    def __init__(
        self, redis: aioredis.Redis, store: Store, *, batch_size: int = 100, idle_s: float = 1.0
    ) -> None:
        self._redis = redis
        self._store = store
        self._batch_size = batch_size
        self._idle_s = idle_s
        self._holder = secrets.token_hex(8)
        self.wake = asyncio.Event()

    async def replay_once(self) -> int:
        """Store spilled requests in order until the stream is empty or the store fails."""
        if not await self._hold_lease():
            return 0
        # The client returns bytes (no decode_responses); the stubs cannot know that.
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self._redis.xrange(
            SPILL_STREAM, count=self._batch_size
        )  # type: ignore[assignment]
        replayed = 0
        for entry_id, fields in entries:
            request = _decode(fields)
            if request is not None:
                try:
                    await self._store(request)
                except grpc.aio.AioRpcError as error:
                    if is_infrastructure_error(error):
                        return replayed  # still down: keep the order, retry this entry later
                    log.error(
                        "spilled webhook refused by the store, dead-lettered",
                        extra={"code": error.code().name, "entry_id": str(entry_id)},
                    )
                    await self._redis.xadd(
                        dead_letter_stream(SPILL_STREAM),
                        fields,  # type: ignore[arg-type]
                    )
            await self._redis.xdel(SPILL_STREAM, entry_id)
            replayed += 1
        return replayed

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                replayed = await self.replay_once()
            except RedisError as error:
                log.warning("spill replayer waiting for Redis", extra={"error": str(error)})
                replayed = 0
            if replayed < self._batch_size:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_either(stop, self.wake), self._idle_s)

    async def _hold_lease(self) -> bool:
        taken = await self._redis.set(REPLAYER_LEASE, self._holder, nx=True, px=LEASE_MS)
        if taken:
            return True
        holder = await self._redis.get(REPLAYER_LEASE)
        if holder in (self._holder, self._holder.encode()):
            await self._redis.pexpire(REPLAYER_LEASE, LEASE_MS)
            return True
        return False


def _decode(fields: dict[bytes, bytes]) -> Message | None:
    kind = _TYPES.get(fields.get(FIELD_TYPE, b"").decode())
    try:
        return None if kind is None else kind.FromString(fields[FIELD_PAYLOAD])
    except (DecodeError, KeyError):
        log.error("unreadable spilled webhook dropped")
        return None


async def _either(stop: asyncio.Event, wake: asyncio.Event) -> None:
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
