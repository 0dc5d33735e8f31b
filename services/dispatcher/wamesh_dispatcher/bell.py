"""The doorbell: after a job commits, its id is appended to its sender's stream, and the
replica that sends for that sender reads the stream to learn of it at once.

Postgres is the queue's truth; the stream only makes new work known without polling. An
entry Redis loses (a flush, a restart without persistence) costs latency, not the job: the
sending replica reads its senders' unfinished jobs from Postgres again every
``WAMESH_RECONCILE_INTERVAL_S``.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

# Entries are read within moments of their append; a long stream is only memory.
STREAM_MAX_LEN = 10_000


def session_id(tenant_id: str, sender_number: str) -> str:
    """The workers registry's session for a sender: one replica sends for it."""
    return f"twilio:{tenant_id}:{sender_number}"


def sender_of(session: str) -> tuple[str, str]:
    """(tenant_id, sender_number) of a session id made by :func:`session_id`."""
    kind, tenant_id, sender_number = session.split(":", 2)
    if kind != "twilio":
        raise ValueError(f"not a twilio session: {session!r}")
    return tenant_id, sender_number


def bell_stream(tenant_id: str, sender_number: str) -> str:
    return f"wamesh:dispatch:{{{tenant_id}}}:bell:{sender_number}"


async def ring(
    redis: aioredis.Redis, tenant_id: str, sender_number: str, job_ids: Sequence[str]
) -> None:
    """Append each job id to its sender's stream (one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.xadd(
                bell_stream(tenant_id, sender_number),
                {b"job": job_id.encode()},
                maxlen=STREAM_MAX_LEN,
                approximate=True,
            )
        await pipe.execute()
