"""The announcer against a real Redis: what a placement's changes leave there, and that a
Redis away is logged, never raised."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from tests.services.workers.workers_testkit import unique
from wamesh.workers.v1 import workers_pb2 as pb
from wamesh_kit.redis_client import make_redis
from wamesh_workers.announcer import Announcer, assignments_channel, raw_reply, route_key
from wamesh_workers.store import Action, Change, SessionRow

TTL_S = 300


def change(action: Action, worker_id: str, session_id: str, epoch: int) -> Change:
    session = SessionRow(
        id=session_id,
        tenant_id="t",
        kind="k",
        required_labels={},
        state="assigned",
        worker_id=worker_id,
        epoch=epoch,
        assigned_at=datetime.now(UTC),
    )
    return Change(action, worker_id, f"{worker_id}:50060", session)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = make_redis(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_a_move_is_published_to_both_workers_and_routes_to_the_new_one(
    redis: aioredis.Redis,
) -> None:
    old, new = unique("w"), unique("w")
    moved, dropped = unique("s"), unique("s")
    await redis.set(route_key(dropped), b"stale")
    pubsub = redis.pubsub()
    await pubsub.subscribe(assignments_channel(old), assignments_channel(new))
    try:
        await Announcer(redis, route_ttl_s=TTL_S).announce(
            [
                change("revoked", old, moved, 1),
                change("assigned", new, moved, 2),
                change("revoked", old, dropped, 1),
            ]
        )
        heard: list[tuple[str, int, str, int]] = []
        async with asyncio.timeout(10):
            while len(heard) < 3:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    body = pb.WatchAssignmentsResponse.FromString(raw_reply(message["data"]))
                    channel = raw_reply(message["channel"]).decode()
                    heard.append((channel, body.action, body.session.id, body.session.epoch))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    revoked, assigned = pb.ASSIGNMENT_ACTION_REVOKED, pb.ASSIGNMENT_ACTION_ASSIGNED
    assert heard == [
        (assignments_channel(old), revoked, moved, 1),
        (assignments_channel(new), assigned, moved, 2),
        (assignments_channel(old), revoked, dropped, 1),
    ]
    raw_route = await redis.get(route_key(moved))
    assert raw_route is not None
    route = pb.RouteSessionResponse.FromString(raw_reply(raw_route))
    assert (route.worker_id, route.endpoint, route.epoch) == (new, f"{new}:50060", 2)
    assert 0 < await redis.ttl(route_key(moved)) <= TTL_S
    assert await redis.exists(route_key(dropped)) == 0


async def test_redis_away_is_logged_for_each_change_and_not_raised(
    unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wamesh_workers.announcer")
    redis = make_redis(f"redis://127.0.0.1:{unused_tcp_port}", socket_timeout_s=0.5)
    try:
        await Announcer(redis, route_ttl_s=TTL_S).announce(
            [change("assigned", "w-1", "s-1", 1), change("revoked", "w-2", "s-2", 3)]
        )
    finally:
        await redis.aclose()
    assert caplog.messages == [
        "announcing assigned of s-1 failed: ConnectionError",
        "announcing revoked of s-2 failed: ConnectionError",
    ]
