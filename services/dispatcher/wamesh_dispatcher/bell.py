"""The doorbell: after a job commits, an ``OutboundJobEvent`` naming it (with the caller's
trace context, so one trace follows the message from Enqueue to Twilio) is appended to its
sender's stream, and the replica that sends for that sender reads the stream to learn of it
at once.

Postgres is the queue's truth; the stream only makes new work known without polling. An
entry Redis loses (a flush, a restart without persistence) costs latency, not the job: the
sending replica reads its senders' unfinished jobs from Postgres again every
``WAMESH_RECONCILE_INTERVAL_S``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis.asyncio as aioredis

from wamesh.events.v1.events_pb2 import OutboundJobEvent
from wamesh_kit.streams import FIELD_PAYLOAD, encode_entry

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
    """Append an entry per job to its sender's stream (one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            event = OutboundJobEvent(
                job_id=job_id, tenant_id=tenant_id, sender_number=sender_number
            )
            pipe.xadd(
                bell_stream(tenant_id, sender_number),
                encode_entry(event),  # type: ignore[arg-type]  # redis-py types fields narrowly
                maxlen=STREAM_MAX_LEN,
                approximate=True,
            )
        await pipe.execute()


def job_id_of(fields: Mapping[bytes, bytes]) -> str:
    """The job an entry of a sender's stream names."""
    return OutboundJobEvent.FromString(fields[FIELD_PAYLOAD]).job_id
