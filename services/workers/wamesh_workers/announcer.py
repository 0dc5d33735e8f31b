"""After a placement commits: tell the workers concerned and refresh the hot routes.

Both live in Redis, and both may be lost with it without harm: a worker that misses a
message learns the truth from its next heartbeat (sessions to release) or on re-syncing its
stream (the snapshot), and a missing route is read again from Postgres.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wamesh.workers.v1 import workers_pb2 as pb
from wamesh_workers.mapping import session_message
from wamesh_workers.store import Change, SessionRow

log = logging.getLogger(__name__)


def raw_reply(value: bytes | str) -> bytes:
    """A reply of the kit's client (bytes: ``decode_responses`` is off)."""
    return value.encode() if isinstance(value, str) else value


def assignments_channel(worker_id: str) -> str:
    return f"wamesh:workers:assignments:{{{worker_id}}}"


def route_key(session_id: str) -> str:
    return f"wamesh:workers:route:{{{session_id}}}"


class Announcer:
    def __init__(self, redis: aioredis.Redis, route_ttl_s: int) -> None:
        self._redis = redis
        self._route_ttl_s = route_ttl_s

    async def announce(self, changes: list[Change]) -> None:
        for change in changes:
            action = (
                pb.ASSIGNMENT_ACTION_ASSIGNED
                if change.action == "assigned"
                else pb.ASSIGNMENT_ACTION_REVOKED
            )
            message = pb.WatchAssignmentsResponse(
                action=action, session=session_message(change.session)
            )
            try:
                await self._redis.publish(
                    assignments_channel(change.worker_id), message.SerializeToString()
                )
                if change.action == "assigned":
                    await self.remember_route(change.session, change.endpoint)
                else:
                    await self._redis.delete(route_key(change.session.id))
            except RedisError as error:
                log.warning(
                    "announcing %s of %s failed: %s",
                    change.action,
                    change.session.id,
                    type(error).__name__,
                )

    async def remember_route(self, session: SessionRow, endpoint: str) -> None:
        route = pb.RouteSessionResponse(
            worker_id=session.worker_id or "", endpoint=endpoint, epoch=session.epoch
        )
        await self._redis.set(
            route_key(session.id), route.SerializeToString(), ex=self._route_ttl_s
        )

    async def cached_route(self, session_id: str) -> pb.RouteSessionResponse | None:
        try:
            raw = await self._redis.get(route_key(session_id))
        except RedisError:
            return None
        return None if raw is None else pb.RouteSessionResponse.FromString(raw_reply(raw))
