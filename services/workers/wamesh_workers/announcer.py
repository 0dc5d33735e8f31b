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
        """Publishes each change to its worker and sets (assigned) or drops (revoked) its
        route. A failure is logged, never raised: see the module's docstring."""
        if not changes:
            return
        # One round trip for the lot: a lost worker's thousands of moves, sent a command at a
        # time, kept the pod watch (and the sweep) busy for a second of round trips.
        async with self._redis.pipeline(transaction=False) as pipe:
            for change in changes:
                action = (
                    pb.ASSIGNMENT_ACTION_ASSIGNED
                    if change.action == "assigned"
                    else pb.ASSIGNMENT_ACTION_REVOKED
                )
                message = pb.WatchAssignmentsResponse(
                    action=action, session=session_message(change.session)
                )
                pipe.publish(assignments_channel(change.worker_id), message.SerializeToString())
                if change.action == "assigned":
                    pipe.set(
                        route_key(change.session.id),
                        self._route(change.session, change.endpoint),
                        ex=self._route_ttl_s,
                    )
                else:
                    pipe.delete(route_key(change.session.id))
            try:
                results: list[object] = list(await pipe.execute(raise_on_error=False))
            except RedisError as error:
                # The batch as a whole failed (Redis away): logged change by change, as when
                # each was sent alone.
                results = [error] * (2 * len(changes))
        # Two replies a change: the publish's, then the route's.
        for change, published, routed in zip(changes, results[::2], results[1::2], strict=True):
            failed = next((r for r in (published, routed) if isinstance(r, RedisError)), None)
            if failed is not None:
                log.warning(
                    "announcing %s of %s failed: %s",
                    change.action,
                    change.session.id,
                    type(failed).__name__,
                )

    async def remember_route(self, session: SessionRow, endpoint: str) -> None:
        await self._redis.set(
            route_key(session.id), self._route(session, endpoint), ex=self._route_ttl_s
        )

    @staticmethod
    def _route(session: SessionRow, endpoint: str) -> bytes:
        route = pb.RouteSessionResponse(
            worker_id=session.worker_id or "", endpoint=endpoint, epoch=session.epoch
        )
        return route.SerializeToString()

    async def cached_route(self, session_id: str) -> pb.RouteSessionResponse | None:
        try:
            raw = await self._redis.get(route_key(session_id))
        except RedisError:
            return None
        return None if raw is None else pb.RouteSessionResponse.FromString(raw_reply(raw))
