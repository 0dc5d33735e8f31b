"""Which tenant a sender number belongs to, and how to check its signatures: an in-process
cache over ``tenants.ResolveNumber`` and ``tenants.GetCredentials``.

Entries are dropped the moment the registry publishes an invalidation (and all of them
whenever the subscription restarts, since messages may have been missed); a TTL bounds
the damage of anything else. Concurrent misses for one number share one lookup.

A route past its TTL is still used for up to one more TTL while a background lookup
refreshes it, so that a webhook never waits on an expiry, and TTLs are spread over their
last half so that routes loaded together (a restart, a burst) are not refreshed together.
A refresh that finds the number gone drops the route.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from twilio.request_validator import RequestValidator

from wamesh.tenants.v1 import tenants_pb2 as tenants_pb
from wamesh.tenants.v1 import tenants_pb2_grpc

log = logging.getLogger(__name__)


class UnknownNumber(LookupError):
    """No tenant has this sender number."""


class NoCredentials(LookupError):
    """The tenant has no Twilio credentials: no signature of its can be checked."""


@dataclass(frozen=True)
class TenantRoute:
    tenant_id: str
    active: bool
    inbound_per_minute: int
    validator: RequestValidator
    fresh_until: float  # then refreshed in the background
    usable_until: float  # then looked up before use


class Routes:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout_s: float,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stub: Any = tenants_pb2_grpc.TenantRegistryStub(channel)
        self._timeout_s = timeout_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._routes: dict[str, TenantRoute] = {}
        self._loading: dict[str, asyncio.Future[TenantRoute]] = {}
        # Raised by every invalidation: a lookup that started before one must not be cached.
        self._generation = 0

    async def resolve(self, number: str, *, timeout_s: float | None = None) -> TenantRoute:
        """The route of ``number``; waiting for the registry (TimeoutError after
        ``timeout_s``) only when no usable route is cached."""
        route = self._routes.get(number)
        if route is not None:
            now = self._clock()
            if now < route.fresh_until:
                return route
            if now < route.usable_until:
                if number not in self._loading:
                    self._lookup(number).add_done_callback(
                        lambda refresh: self._refreshed(number, refresh)
                    )
                return route
        return await asyncio.wait_for(asyncio.shield(self._lookup(number)), timeout_s)

    def _lookup(self, number: str) -> asyncio.Future[TenantRoute]:
        """The lookup of ``number`` under way, or a new one."""
        loading = self._loading.get(number)
        if loading is None:
            loading = asyncio.ensure_future(self._load(number))
            self._loading[number] = loading
            loading.add_done_callback(lambda _: self._loading.pop(number, None))
        return loading

    def _refreshed(self, number: str, refresh: asyncio.Future[TenantRoute]) -> None:
        if refresh.cancelled():
            return
        error = refresh.exception()  # also marks it retrieved: nobody else may await it
        if isinstance(error, UnknownNumber | NoCredentials):
            self._routes.pop(number, None)
        elif error is not None:  # the registry is unreachable: keep the route meanwhile
            log.warning("route refresh failed", extra={"error_type": type(error).__name__})

    def invalidate(self, invalidation: tenants_pb.TenantInvalidation) -> None:
        self._generation += 1
        for number in invalidation.numbers:
            self._routes.pop(number, None)
        for number, route in list(self._routes.items()):
            if route.tenant_id == invalidation.tenant_id:
                del self._routes[number]

    def reset(self) -> None:
        self._generation += 1
        self._routes.clear()

    async def _load(self, number: str) -> TenantRoute:
        generation = self._generation
        try:
            resolved = await self._stub.ResolveNumber(
                tenants_pb.ResolveNumberRequest(number=number), timeout=self._timeout_s
            )
            credentials = await self._stub.GetCredentials(
                tenants_pb.GetCredentialsRequest(tenant_id=resolved.tenant_id),
                timeout=self._timeout_s,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise UnknownNumber(number) from None
            if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                raise NoCredentials(number) from None
            raise
        now = self._clock()
        route = TenantRoute(
            tenant_id=resolved.tenant_id,
            active=resolved.status == tenants_pb.TENANT_STATUS_ACTIVE,
            inbound_per_minute=resolved.limits.inbound_messages_per_minute,
            validator=RequestValidator(credentials.credentials.auth_token),
            fresh_until=now + self._ttl_s * random.uniform(0.5, 1.0),
            usable_until=now + 2 * self._ttl_s,
        )
        if generation == self._generation:
            self._routes[number] = route
        return route
