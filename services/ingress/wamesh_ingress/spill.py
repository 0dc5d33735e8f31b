"""When the conversation store is down, verified webhooks wait in a Redis stream.

Twilio does not retry a 5xx by default, so ingress does not answer one while it can still
keep the webhook: it appends the store request to the spill stream, answers 200, and the
replayer stores spilled webhooks in arrival order as soon as the store answers again. A
replayed request is idempotent (MessageSid, provider SID), so a replay after a crash
between storing and deleting the entry, or a webhook spilled twice (Twilio's retry of one
whose first answer was lost), stores nothing twice. One replayer runs at a time across
replicas (a Redis lease), which keeps arrival order. An entry the store refuses, or that
cannot be read, goes to the spill's dead letter with the reason, never silently away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import redis.asyncio as aioredis
from google.protobuf.message import DecodeError, Message
from redis.exceptions import RedisError

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh_kit.alarms import Alarms
from wamesh_kit.batching import GroupCommit
from wamesh_kit.keys import dead_letter_stream, global_key, stream_key
from wamesh_kit.redis_client import PipelinedScript
from wamesh_kit.rpc.errors import is_infrastructure_error
from wamesh_kit.streams import FIELD_PAYLOAD, FIELD_TYPE, encode_entry

log = logging.getLogger(__name__)

SPILL_STREAM = stream_key("ingress-spill")
REPLAYER_LEASE = global_key("ingress", "spill-replayer")
_TYPES: dict[str, type[Message]] = {
    pb.RecordInboundRequest.DESCRIPTOR.full_name: pb.RecordInboundRequest,
    pb.RecordStatusRequest.DESCRIPTOR.full_name: pb.RecordStatusRequest,
}
# Take the lease if free, extend it if ours: one atomic step, so two replayers can never
# both believe they hold it (a GET then PEXPIRE could extend a lease another just took).
_HOLD = PipelinedScript(
    """
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
)
_RELEASE = PipelinedScript(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)

Store = Callable[[Message], Awaitable[None]]


class Spill:
    """Appends to the spill stream. Concurrent appends travel as one pipeline: a failed
    store batch spills every webhook of it at once, and one XADD per connection would need
    as many connections as the batch has webhooks."""

    def __init__(self, redis: aioredis.Redis, *, alarms: Alarms | None = None) -> None:
        self._redis = redis
        self._appends: GroupCommit[Message, bytes] = GroupCommit(self._append_all, alarms=alarms)

    async def append(self, request: Message, *, timeout_s: float) -> None:
        """Returns once Redis has ``request``; RedisError or TimeoutError if not."""
        await self._appends.submit(request, timeout_s=timeout_s)

    async def _append_all(self, requests: list[Message]) -> list[bytes]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for request in requests:
                pipe.xadd(SPILL_STREAM, encode_entry(request))  # type: ignore[arg-type]
            return list(await pipe.execute())


class SpillReplayer:
    """Stores spilled requests in arrival order, one replayer at a time across replicas.

    The lease is taken or extended atomically before each entry and is longer than a store
    call may last (``lease_ms`` > the store's deadline), so no two replayers store at once:
    when it cannot be extended, the replayer stops at that entry and leaves it to the holder.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        store: Store,
        *,
        lease_ms: int = 10_000,
        batch_size: int = 100,
        idle_s: float = 1.0,
    ) -> None:
        self._redis = redis
        self._store = store
        self._lease_ms = lease_ms
        self._batch_size = batch_size
        self._idle_s = idle_s
        self._holder = secrets.token_hex(8)
        self.wake = asyncio.Event()

    async def replay_once(self) -> int:
        """Store spilled requests in order until the stream is empty, the store fails or the
        lease is lost; how many entries left the stream."""
        if not await self._hold_lease():
            return 0
        # The client returns bytes (no decode_responses); the stubs cannot know that.
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self._redis.xrange(
            SPILL_STREAM, count=self._batch_size
        )  # type: ignore[assignment]
        replayed = 0
        for entry_id, fields in entries:
            if not await self._hold_lease():
                return replayed
            if not await self._replay(entry_id, fields):
                return replayed
            replayed += 1
        return replayed

    async def _replay(self, entry_id: bytes, fields: dict[bytes, bytes]) -> bool:
        """False when the store is down: the entry stays first in line."""
        request, problem = _decode(fields)
        if request is not None:
            try:
                await self._store(request)
            except grpc.aio.AioRpcError as error:
                if is_infrastructure_error(error):
                    return False
                problem = f"refused by the store: {error.code().name}"
        if problem:
            await self._dead_letter(entry_id, fields, problem)
        else:
            await self._redis.xdel(SPILL_STREAM, entry_id)
        return True

    async def _dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        log.error(
            "spilled webhook dead-lettered", extra={"entry_id": str(entry_id), "reason": reason}
        )
        dead: dict[Any, Any] = {**fields, b"origin_id": entry_id, b"reason": reason.encode()}
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(dead_letter_stream(SPILL_STREAM), dead)
            pipe.xdel(SPILL_STREAM, entry_id)
            await pipe.execute()

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
        with contextlib.suppress(RedisError):
            await _RELEASE.run(self._redis, [([REPLAYER_LEASE], [self._holder])])

    async def _hold_lease(self) -> bool:
        held = await _HOLD.run(self._redis, [([REPLAYER_LEASE], [self._holder, self._lease_ms])])
        return bool(held[0])


def _decode(fields: dict[bytes, bytes]) -> tuple[Message | None, str]:
    """The spilled request, or why it cannot be read."""
    kind_name = fields.get(FIELD_TYPE, b"").decode(errors="replace")
    kind = _TYPES.get(kind_name)
    if kind is None:
        return None, f"unknown entry type {kind_name!r}"
    try:
        return kind.FromString(fields[FIELD_PAYLOAD]), ""
    except (DecodeError, KeyError):
        return None, f"payload does not parse as {kind_name}"


async def _either(stop: asyncio.Event, wake: asyncio.Event) -> None:
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
