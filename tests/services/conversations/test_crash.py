"""SIGKILL the conversations process in the middle of a stream of writes: every write it
acknowledged is stored, and every stored message's event is published after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import grpc
import grpc.aio
import redis.asyncio as aioredis
import sqlalchemy as sa

from tests.services.conversations.conversations_testkit import (
    inbound,
    messages_without_event,
    number,
    tenant,
    wait_for_events,
)
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh_kit.db import make_engine
from wamesh_kit.localinfra import free_port
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_INTERNAL_TOKEN

WRITERS = 8
KILL_AFTER_ACKS = 200


def start(database_url: str, redis_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WAMESH_DATABASE_URL": database_url,
        "WAMESH_REDIS_URL": redis_url,
        "WAMESH_GRPC_LISTEN": f"127.0.0.1:{port}",
        "WAMESH_METRICS_LISTEN": "",
        "WAMESH_OUTBOX_POLL_S": "0.05",
        "WAMESH_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "wamesh_kit", "serve", "conversations"], env=env)


async def ready(channel: grpc.aio.Channel) -> None:
    await asyncio.wait_for(channel.channel_ready(), 60)


async def test_acknowledged_writes_survive_sigkill_and_their_events_follow(
    conversations_dsn: str, redis_url: str, redis_client: aioredis.Redis
) -> None:
    port = free_port()
    tenant_id, sender = tenant(), number()
    acknowledged: dict[str, str] = {}  # MessageSid → message id
    process = start(conversations_dsn, redis_url, port)
    try:
        async with make_channel(f"127.0.0.1:{port}", token=DEV_INTERNAL_TOKEN) as channel:
            await ready(channel)
            stub = conversations_pb2_grpc.ConversationStoreStub(channel)
            killed = asyncio.Event()

            async def writer(index: int) -> None:
                customer = number()
                while not killed.is_set():
                    request = inbound(tenant_id, customer, sender, body=f"w{index}")
                    try:
                        response = await stub.RecordInbound(request, timeout=5)
                    except grpc.aio.AioRpcError:
                        return  # the process is gone: this write was never acknowledged
                    acknowledged[request.message.message_sid] = response.message.id
                    if len(acknowledged) >= KILL_AFTER_ACKS and not killed.is_set():
                        process.send_signal(signal.SIGKILL)
                        killed.set()

            await asyncio.gather(*(writer(i) for i in range(WRITERS)))
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()

    restarted = start(conversations_dsn, redis_url, port)
    try:
        async with make_channel(f"127.0.0.1:{port}", token=DEV_INTERNAL_TOKEN) as channel:
            await ready(channel)
            events = await wait_for_events(redis_client, set(acknowledged.values()), timeout_s=30)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)

    assert len(acknowledged) >= KILL_AFTER_ACKS
    stored = await stored_messages(conversations_dsn, list(acknowledged))
    assert stored == acknowledged
    assert {e.message_id for e in events} >= set(acknowledged.values())
    assert await messages_without_event(conversations_dsn) == 0


async def stored_messages(database_url: str, sids: list[str]) -> dict[str, Any]:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.text("SELECT provider_sid, id FROM messages WHERE provider_sid = ANY(:sids)"),
                {"sids": sids},
            )
            return {sid: message_id for sid, message_id in rows}
    finally:
        await engine.dispose()
