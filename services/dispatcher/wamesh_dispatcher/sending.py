"""The replica as a session worker: it registers with the workers registry as a worker of
kind ``twilio`` (through the worker SDK) and runs one :class:`SenderRunner` for each sender
session placed on it, stopping it when the session is revoked.

``on_revoked`` returns only once the runner has stopped and its in-flight sends are
recorded: the SDK's next heartbeat, the one that hands the sender to another replica, is
sent after that, so two replicas never send for one sender at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from wamesh.tenants.v1 import tenants_pb2
from wamesh.tenants.v1.tenants_pb2 import TenantInvalidation
from wamesh.workers.v1 import workers_pb2 as workers_pb
from wamesh_dispatcher.bell import sender_of
from wamesh_dispatcher.runner import Account, RunnerDeps, SenderLimits, SenderRunner
from wamesh_dispatcher.settings import DispatcherSettings
from wamesh_kit.errors import NotFound, Unavailable
from wamesh_kit.tenant_cache import TenantCache
from wamesh_worker import SessionWorker, WorkerSpec

log = logging.getLogger(__name__)

# Credentials and limits are read when a sender starts and at most this old afterwards; an
# invalidation from tenants drops them at once (a rotated token is used on the next send).
ACCOUNT_TTL_S = 300.0
DEFAULT_RATE = 80.0  # Twilio's WhatsApp throughput per sender
DEFAULT_INTERVAL_S = 2.0


class TenantAccounts:
    """A tenant's Twilio credentials (GetCredentials, cached here) and sending limits (from
    the replica's tenant cache)."""

    def __init__(
        self,
        tenants_stub: Any,
        timeout_s: float,
        tenants: TenantCache,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tenants_stub = tenants_stub
        self._timeout_s = timeout_s
        self._tenants = tenants
        self._clock = clock
        self._accounts: dict[str, tuple[float, Account]] = {}
        self._listeners: list[Callable[[str], None]] = []

    async def account(self, tenant_id: str) -> Account:
        cached = self._accounts.get(tenant_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        answer = await self._call(
            self._tenants_stub.GetCredentials,
            tenants_pb2.GetCredentialsRequest(tenant_id=tenant_id),
        )
        credentials = answer.credentials
        account = Account(credentials.account_sid, credentials.auth_token)
        self._accounts[tenant_id] = (self._clock() + ACCOUNT_TTL_S, account)
        return account

    async def limits(self, tenant_id: str) -> SenderLimits:
        try:
            limits = (await self._tenants.get(tenant_id)).limits
        except NotFound:
            raise Unavailable(f"tenants knows no tenant {tenant_id}") from None
        interval = limits.recipient_min_interval.ToTimedelta().total_seconds()
        return SenderLimits(
            messages_per_second=limits.outbound_messages_per_second or DEFAULT_RATE,
            recipient_interval_s=(
                interval if limits.HasField("recipient_min_interval") else DEFAULT_INTERVAL_S
            ),
            max_attempts=limits.max_send_attempts or None,
        )

    def forget(self, invalidation: TenantInvalidation) -> None:
        self._accounts.pop(invalidation.tenant_id, None)
        self._tenants.forget(invalidation)
        for listener in self._listeners:
            listener(invalidation.tenant_id)

    def forget_all(self) -> None:
        self._accounts.clear()
        self._tenants.forget_all()
        for listener in self._listeners:
            listener("")

    def on_forget(self, listener: Callable[[str], None]) -> None:
        """Call ``listener`` with the tenant whose credentials were dropped ('' for all)."""
        self._listeners.append(listener)

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"tenants answered {error.code().name}") from None


class Sending:
    """This replica's runners, one per sender session it holds."""

    def __init__(
        self,
        settings: DispatcherSettings,
        deps: Callable[[Callable[[], int | None]], RunnerDeps],
    ) -> None:
        self._settings = settings
        self._deps = deps
        self._runners: dict[str, tuple[SenderRunner, asyncio.Task[None]]] = {}
        instance = settings.instance_id or f"dispatcher-{socket.gethostname()}-{os.getpid()}"
        self.worker = SessionWorker(
            settings.workers_target,
            settings.internal_token.get_secret_value(),
            WorkerSpec(
                instance_id=instance,
                kind="twilio",
                endpoint=settings.worker_endpoint or settings.grpc_listen,
                capacity=settings.worker_capacity,
            ),
            on_assigned=self._start,
            on_revoked=self._stop,
            load=self._load,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """A background loop: serve sessions until ``stop``, then hand every one back."""
        async with self.worker:
            await stop.wait()
        # Closing the worker stopped every runner (on_revoked) and deregistered.

    async def _start(self, session: workers_pb.Session) -> None:
        tenant_id, sender_number = sender_of(session.id)
        epoch = session.epoch

        def holds() -> int | None:
            return self.worker.epoch_of(session.id)

        runner = SenderRunner(tenant_id, sender_number, epoch, self._deps(holds))
        task = asyncio.create_task(runner.run(), name=f"send {session.id}")
        self._runners[session.id] = (runner, task)
        log.info("sending for %s at epoch %d", session.id, epoch)

    async def _stop(self, session_id: str) -> None:
        found = self._runners.pop(session_id, None)
        if found is None:
            return
        runner, task = found
        runner.stop()
        await asyncio.gather(task, return_exceptions=True)
        log.info("stopped sending for %s", session_id)

    def credentials_changed(self, tenant_id: str) -> None:
        """Tell the tenant's runners ('' : every runner) to use its credentials afresh."""
        for runner, _ in self._runners.values():
            if tenant_id in ("", runner.tenant_id):
                runner.credentials_changed()

    def _load(self) -> float:
        return min(1.0, len(self._runners) / self._settings.worker_capacity)
