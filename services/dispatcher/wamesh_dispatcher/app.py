"""Wiring: settings → engine, Redis, the tenants and workers clients → the Dispatcher servicer
(and, beside it, the loops that send)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from opentelemetry import trace
from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh.workers.v1 import workers_pb2_grpc
from wamesh_dispatcher.backoff import Backoff
from wamesh_dispatcher.late_failures import LateFailures
from wamesh_dispatcher.metrics import IntakeMetrics, SendMetrics, count_jobs
from wamesh_dispatcher.records import OutboundRecords
from wamesh_dispatcher.runner import RunnerDeps
from wamesh_dispatcher.sending import Sending, TenantAccounts
from wamesh_dispatcher.servicer import Dispatcher
from wamesh_dispatcher.settings import DispatcherSettings
from wamesh_dispatcher.store import JobStore
from wamesh_dispatcher.tenants import SessionPlacer, TenantDirectory
from wamesh_dispatcher.twilio_api import TwilioApi
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.database_service import BackgroundLoop, Backing, Wiring, database_service
from wamesh_kit.rpc.server import GrpcService, Service
from wamesh_kit.tenant_cache import TenantCache
from wamesh_kit.tenant_invalidations import InvalidationListener

# Enqueue answers after the commit whatever Redis does: a stalled Redis must cost the bell
# half a second, not the caller its deadline.
REDIS_TIMEOUT_S = 0.5
GET_TENANT = "/wamesh.tenants.v1.TenantRegistry/GetTenant"
GET_CREDENTIALS = "/wamesh.tenants.v1.TenantRegistry/GetCredentials"
# Both idempotent on the job's key: safe for grpc to retry.
RECORD_OUTBOUND = "/wamesh.conversations.v1.ConversationStore/RecordOutbound"
UPDATE_OUTBOUND = "/wamesh.conversations.v1.ConversationStore/UpdateOutbound"
SET_OPT_OUT = "/wamesh.conversations.v1.ConversationStore/SetOptOut"


@asynccontextmanager
async def dispatcher_service(
    settings: DispatcherSettings,
    *,
    registry: CollectorRegistry = REGISTRY,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[GrpcService]:
    """The dispatcher's gRPC server and its loops, started; stopped on exit."""

    def wire(backing: Backing) -> Wiring:
        tenants_channel = make_channel(
            settings.tenants_target,
            token=settings.internal_token.get_secret_value(),
            idempotent_methods=[GET_TENANT, GET_CREDENTIALS],
            default_timeout=settings.rpc_timeout_s,
            tracer_provider=tracer_provider,
        )
        workers_channel = make_channel(
            settings.workers_target,
            token=settings.internal_token.get_secret_value(),
            default_timeout=settings.rpc_timeout_s,
            tracer_provider=tracer_provider,
        )
        store = JobStore(backing.engine)
        sessions = SessionPlacer(
            workers_pb2_grpc.WorkerRegistryStub(workers_channel), settings.rpc_timeout_s
        )
        tenants_stub = tenants_pb2_grpc.TenantRegistryStub(tenants_channel)
        # One cache of the tenants this replica meets: intake reads their senders, sending
        # their limits; an invalidation drops the entry for both.
        tenant_cache = TenantCache(tenants_stub, settings.rpc_timeout_s)
        servicer = Dispatcher(
            store,
            backing.redis,
            TenantDirectory(tenant_cache),
            sessions,
            IntakeMetrics(backing.registry),
        )

        async def clients(stop: asyncio.Event) -> None:
            """Holds the peers' channels open until the server has drained, then closes them."""
            await stop.wait()
            await sessions.close()
            await tenants_channel.close(None)
            if conversations_channel is not None:
                await conversations_channel.close(None)
            await workers_channel.close(None)

        accounts = TenantAccounts(tenants_stub, settings.rpc_timeout_s, tenant_cache)
        conversations_channel = (
            make_channel(
                settings.conversations_target,
                token=settings.internal_token.get_secret_value(),
                idempotent_methods=[RECORD_OUTBOUND, UPDATE_OUTBOUND, SET_OPT_OUT],
                default_timeout=settings.rpc_timeout_s,
                tracer_provider=tracer_provider,
            )
            if settings.conversations_target
            else None
        )
        records = (
            OutboundRecords(
                conversations_pb2_grpc.ConversationStoreStub(conversations_channel),
                settings.rpc_timeout_s,
            )
            if conversations_channel is not None
            else None
        )
        send_metrics = SendMetrics(backing.registry)
        backoff = Backoff(
            base_s=settings.backoff_base_s,
            cap_s=settings.backoff_cap_s,
            attempts=settings.max_attempts,
        )

        async def census(stop: asyncio.Event) -> None:
            await count_jobs(store, send_metrics, stop, settings.census_interval_s)

        def runner_deps(holds: Callable[[], int | None]) -> RunnerDeps:
            return RunnerDeps(
                store=store,
                redis=backing.redis,
                account=accounts.account,
                limits=accounts.limits,
                open_api=lambda account: TwilioApi(
                    account.account_sid,
                    account.auth_token,
                    base_url=settings.twilio_base_url or None,
                    timeout_s=settings.twilio_timeout_s,
                ),
                backoff=backoff,
                status_callback_url=settings.status_callback_url,
                sends_in_flight=settings.sends_in_flight_per_sender,
                reconcile_interval_s=settings.reconcile_interval_s,
                holds=holds,
                metrics=send_metrics,
                lookup_back_s=settings.twilio_timeout_s,
                tracer=trace.get_tracer(__name__, tracer_provider=tracer_provider),
                records=records,
            )

        sending = Sending(settings, runner_deps)
        accounts.on_forget(sending.credentials_changed)

        async def send(stop: asyncio.Event) -> None:
            # A rotated token or changed limits reach the runners at once.
            async with InvalidationListener(
                backing.redis, accounts.forget, on_reset=accounts.forget_all
            ):
                await sending.run(stop)

        late = LateFailures(store, backing.redis, backoff, records)

        async def settle_late_failures(stop: asyncio.Event) -> None:
            await late.consumer(sending.worker.instance_id).run(stop)

        loops: dict[str, BackgroundLoop] = {"clients": clients, "census": census}
        if settings.send:
            loops["send"] = send
            loops["late-failures"] = settle_late_failures
        return Wiring(
            [
                Service(
                    dispatch_pb2.DESCRIPTOR.services_by_name["Dispatcher"],
                    servicer,
                    dispatch_pb2_grpc.add_DispatcherServicer_to_server,
                )
            ],
            loops,
        )

    async with database_service(
        settings,
        wire,
        client_name="dispatcher",
        registry=registry,
        tracer_provider=tracer_provider,
        redis_socket_timeout_s=REDIS_TIMEOUT_S,
    ) as server:
        yield server
