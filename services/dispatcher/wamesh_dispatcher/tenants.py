"""What the dispatcher asks other services at intake: a tenant's sender numbers (tenants), and
that each sender's session exists in the workers registry so some replica sends for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from wamesh.tenants.v1 import tenants_pb2
from wamesh.workers.v1 import workers_pb2
from wamesh_dispatcher.bell import session_id
from wamesh_kit.errors import NotFound, Unavailable

log = logging.getLogger(__name__)

# A tenant's numbers change rarely (an admin adds one), but Enqueue is the hot path: a bot's
# burst or a 500-job batch would otherwise call GetTenant once per job. A number added is
# usable, and one removed refused, within this long on every replica.
SENDERS_TTL_S = 30.0
# Bounds the memory a flood of distinct tenant ids can take; the oldest entry goes first.
MAX_CACHED_TENANTS = 10_000
SESSION_KIND = "twilio"


class TenantDirectory:
    """A tenant's sender numbers, from tenants' GetTenant, cached for :data:`SENDERS_TTL_S`."""

    def __init__(
        self,
        stub: Any,
        timeout_s: float,
        *,
        ttl_s: float = SENDERS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub = stub
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}

    async def senders(self, tenant_id: str, field: str = "tenant_id") -> tuple[str, ...]:
        """The tenant's sender numbers (E.164), oldest (the default) first; NotFound naming
        ``field`` for an unknown tenant (never cached: a tenant created a moment ago is
        usable at once)."""
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        numbers = await self._fetch(tenant_id, field)
        if len(self._cache) >= MAX_CACHED_TENANTS:
            self._cache.pop(next(iter(self._cache)))
        self._cache.pop(tenant_id, None)  # re-inserted last: the dict stays oldest-first
        self._cache[tenant_id] = (self._clock() + self._ttl_s, numbers)
        return numbers

    async def _fetch(self, tenant_id: str, field: str) -> tuple[str, ...]:
        try:
            response = await self._stub.GetTenant(
                tenants_pb2.GetTenantRequest(tenant_id=tenant_id), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise NotFound("no such tenant", field=field) from None
            log.warning("tenants GetTenant failed: %s %s", error.code().name, error.details())
            raise Unavailable("the tenants service cannot be reached; retry") from None
        # The default sender is the one the tenant has had longest (tenants lists them by
        # number): adding a number never changes where a tenant's default messages come from.
        by_age = sorted(
            response.tenant.sender_numbers,
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
