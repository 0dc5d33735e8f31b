"""What the dispatcher asks other services at intake: a tenant's sender numbers (tenants), and
that each sender's session exists in the workers registry so some replica sends for it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from wamesh.workers.v1 import workers_pb2
from wamesh_dispatcher.bell import session_id
from wamesh_kit.tenant_cache import TenantCache

log = logging.getLogger(__name__)

SESSION_KIND = "twilio"


class TenantDirectory:
    """A tenant's sender numbers, from the replica's tenant cache: Enqueue is the hot path,
    and a bot's burst or a 500-job batch would otherwise ask tenants once per job."""

    def __init__(self, tenants: TenantCache) -> None:
        self._tenants = tenants

    async def senders(self, tenant_id: str, field: str = "tenant_id") -> tuple[str, ...]:
        """The tenant's sender numbers (E.164), oldest (the default) first; NotFound naming
        ``field`` for an unknown tenant."""
        tenant = await self._tenants.get(tenant_id, field=field)
        # The default sender is the one the tenant has had longest (tenants lists them by
        # number): adding a number never changes where a tenant's default messages come from.
        by_age = sorted(
            tenant.sender_numbers,
            key=lambda sender: (sender.added_at.ToDatetime(), sender.number),
        )
        return tuple(sender.number for sender in by_age)


class SessionPlacer:
    """Makes sure the workers registry knows each sender's session, once per process, so a
    replica is placed to send for it. In the background: Enqueue never waits on the registry,
    and a failure is only logged (the next Enqueue for the sender tries again)."""

    def __init__(self, stub: Any, timeout_s: float) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._known: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def ensure(self, tenant_id: str, sender_number: str) -> None:
        session = session_id(tenant_id, sender_number)
        if session in self._known:
            return
        self._known.add(session)  # now, so concurrent calls start one request, not many
        task = asyncio.create_task(self._assign(session, tenant_id), name=f"assign {session}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _assign(self, session: str, tenant_id: str) -> None:
        request = workers_pb2.AssignSessionRequest(
            session_id=session, tenant_id=tenant_id, kind=SESSION_KIND
        )
        try:
            await self._stub.AssignSession(request, timeout=self._timeout_s)
        except Exception as error:  # the registry away: retried on the next Enqueue
            self._known.discard(session)
            log.warning(
                "could not register session %s with the workers registry: %s", session, error
            )

    async def settled(self) -> None:
        """Waits for the requests under way (tests, and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
