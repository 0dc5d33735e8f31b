"""Helpers of the conversations service tests."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import Any

import grpc
import grpc.aio
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa

from tests.redis_streams import Fields, stream_entries
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.events.v1 import events_pb2
from wamesh_conversations.settings import ConversationsSettings
from wamesh_conversations.store import INBOUND_STREAM
from wamesh_kit.db import make_engine
from wamesh_kit.rpc.errors import domain_error_from_rpc_error


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> ConversationsSettings:
    values: dict[str, Any] = {
        "grpc_listen": "127.0.0.1:0",
        "metrics_listen": "",
        "database_url": database_url,
        "redis_url": redis_url,
        "shutdown_grace_s": 0,
        "outbox_poll_s": 0.05,
        **overrides,
    }
    return ConversationsSettings(**values)


def sid(prefix: str = "SM") -> str:
    return prefix + secrets.token_hex(16)


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def number() -> str:
    return "+1555" + str(secrets.randbelow(10**7)).zfill(7)


def inbound(
    tenant_id: str, customer: str, sender: str, body: str = "hola", **fields: Any
) -> pb.RecordInboundRequest:
    message_fields: dict[str, Any] = {
        "message_sid": sid(),
        "account_sid": "AC" + "0" * 32,
        "from_address": f"whatsapp:{customer}",
        "to_address": f"whatsapp:{sender}",
        "body": body,
        "profile_name": "Ana",
        "wa_id": customer.removeprefix("+"),
        "message_type": "text",
    }
    rate_limited = fields.pop("rate_limited", False)
    message_fields.update(fields)
    return pb.RecordInboundRequest(
        tenant_id=tenant_id,
        message=pb.InboundMessage(**message_fields),
        rate_limited=rate_limited,
    )


def outbound(tenant_id: str, customer: str, sender: str, **fields: Any) -> pb.RecordOutboundRequest:
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "idempotency_key": f"test:{uuid.uuid4().hex}",
        "sender_number": sender,
        "customer_number": customer,
        "body": "Tu pedido está confirmado",
        **fields,
    }
    return pb.RecordOutboundRequest(**values)


async def assert_refused(call: Any, code: grpc.StatusCode, field: str | None = None) -> str:
    """Await ``call``, assert it fails with ``code`` naming ``field``; returns the details."""
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    error = failure.value
    assert error.code() == code, f"{error.code()} ({error.details()}), expected {code}"
    if field is not None:
        domain_error = domain_error_from_rpc_error(error)
        assert domain_error is not None
        assert domain_error.field == field, error.details()
    return error.details() or ""


def entry_of(entries: list[tuple[bytes, Fields]], message_id: str) -> Fields:
    """The fields of the inbound event of ``message_id`` among ``entries``."""
    return next(
        fields
        for _, fields in entries
        if events_pb2.InboundMessageEvent.FromString(fields[b"payload"]).message_id == message_id
    )


async def inbound_events(redis: aioredis.Redis) -> list[events_pb2.InboundMessageEvent]:
    entries = await stream_entries(redis, INBOUND_STREAM)
    return [events_pb2.InboundMessageEvent.FromString(f[b"payload"]) for _, f in entries]


async def wait_for_events(
    redis: aioredis.Redis, message_ids: set[str], timeout_s: float = 15
) -> list[events_pb2.InboundMessageEvent]:
    """The stream's events for ``message_ids`` once all have arrived (fails after timeout)."""

    async def arrived() -> list[events_pb2.InboundMessageEvent]:
        while True:
            events = [e for e in await inbound_events(redis) if e.message_id in message_ids]
            if {e.message_id for e in events} >= message_ids:
                return events
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(arrived(), timeout_s)


async def messages_without_event(database_url: str) -> int:
    """Stored inbound messages minus their outbox events: 0 when every one has its event."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            messages = await connection.scalar(
                sa.text("SELECT count(*) FROM messages WHERE direction = 1")
            )
            events = await connection.scalar(
                sa.text(
                    "SELECT count(*) FROM outbox "
                    "WHERE message_type = 'wamesh.events.v1.InboundMessageEvent'"
                )
            )
    finally:
        await engine.dispose()
    return int(messages) - int(events)
