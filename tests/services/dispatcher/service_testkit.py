"""Settings and small helpers for the tests of the Dispatcher gRPC service."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
import sqlalchemy as sa

from tests.services.tenants.tenants_testkit import create_tenant, unique_number
from wamesh.dispatch.v1 import dispatch_pb2 as pb
from wamesh.tenants.v1 import tenants_pb2
from wamesh_dispatcher.bell import bell_stream, job_id_of
from wamesh_dispatcher.settings import DispatcherSettings
from wamesh_kit.db import make_engine
from wamesh_kit.rpc.auth import mint_tenant_token
from wamesh_kit.settings import DEV_JWT_SECRET

# Nothing listens here: the session registration fails at once, and is only logged.
NO_WORKERS = "127.0.0.1:1"


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> DispatcherSettings:
    values: dict[str, Any] = {
        "grpc_listen": "127.0.0.1:0",
        "metrics_listen": "",
        "database_url": database_url,
        "redis_url": redis_url,
        "shutdown_grace_s": 0,
        "workers_target": NO_WORKERS,
        "send": False,  # intake alone: the sending side has tests of its own
        **overrides,
    }
    return DispatcherSettings(**values)


async def new_tenant(tenants_admin: Any, senders: int = 1) -> tuple[str, list[str]]:
    """A tenant with ``senders`` sender numbers: (its id, its numbers, the default first)."""
    tenant = await create_tenant(tenants_admin)
    numbers = [unique_number() for _ in range(senders)]
    for number in numbers:
        await tenants_admin.AddSenderNumber(
            tenants_pb2.AddSenderNumberRequest(tenant_id=tenant.id, number=number)
        )
    return tenant.id, numbers


def message(tenant_id: str, **fields: Any) -> pb.EnqueueRequest:
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "idempotency_key": f"order:{uuid.uuid4().hex[:8]}:confirmed",
        "recipient_number": unique_number(),
        "body": "Your paella is on its way",
        **fields,
    }
    return pb.EnqueueRequest(**values)


def tenant_token(tenant_id: str) -> str:
    return mint_tenant_token(DEV_JWT_SECRET, tenant_id, ttl=timedelta(hours=1))


async def rung(redis_client: aioredis.Redis, tenant_id: str, sender: str) -> list[str]:
    """The job ids on the sender's stream, oldest first."""
    entries: Any = await redis_client.xrange(bell_stream(tenant_id, sender))
    return [job_id_of(fields) for _, fields in entries]


async def kill_jobs(
    dsn: str, job_ids: list[str], error_code: int, dead_at: datetime | None = None
) -> None:
    """Move jobs to the dead letters as the sending runner would, one microsecond apart."""
    engine = make_engine(dsn)
    at = dead_at or datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            for index, job_id in enumerate(job_ids):
                await conn.execute(
                    sa.text(
                        "UPDATE jobs SET state = 'dead', attempts = 5, dead_at = :at,"
                        " last_error_code = :code, last_error_message = 'gave up'"
                        " WHERE id = :id"
                    ),
                    {"at": at + timedelta(microseconds=index), "code": error_code, "id": job_id},
                )
    finally:
        await engine.dispose()
