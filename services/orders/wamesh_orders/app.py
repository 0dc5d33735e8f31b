"""Wiring: settings → engine, Redis, the tenants, dispatcher and conversations clients → the
OrderService servicer, and beside it the bot (the ``inbound`` consumer), the outbox and the
sweep (cart expiry, handled messages past retention)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from opentelemetry.trace import TracerProvider
from prometheus_client import REGISTRY, CollectorRegistry

from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh.dispatch.v1 import dispatch_pb2_grpc
from wamesh.orders.v1 import orders_pb2, orders_pb2_grpc
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit.background import repeat
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.database_service import BackgroundLoop, Backing, Wiring, database_service
from wamesh_kit.rpc.server import GrpcService, Service
from wamesh_kit.streams import oldest_unhandled_age_s
from wamesh_kit.tenant_cache import TenantCache
from wamesh_kit.tenant_invalidations import InvalidationListener
from wamesh_orders.actions import OrderActions
from wamesh_orders.calls import Calls
from wamesh_orders.metrics import OrdersMetrics
from wamesh_orders.servicer import OrderServiceServicer
from wamesh_orders.settings import OrdersSettings
from wamesh_orders.store import OrderStore
from wamesh_orders.turns import GROUP, INBOUND_STREAM, Turns

GET_TENANT = "/wamesh.tenants.v1.TenantRegistry/GetTenant"
# Both idempotent on their keys: safe for grpc to retry.
ENQUEUE_BATCH = "/wamesh.dispatch.v1.Dispatcher/EnqueueBatch"
SET_OPT_OUT = "/wamesh.conversations.v1.ConversationStore/SetOptOut"
OUTBOX_INTERVAL_S = 1.0
SWEEP_BATCH = 500


@asynccontextmanager
async def orders_service(
    settings: OrdersSettings,
    *,
    registry: CollectorRegistry = REGISTRY,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[GrpcService]:
    """The orders service's gRPC server and its loops, started; stopped on exit."""

    def wire(backing: Backing) -> Wiring:
        tenants_channel = make_channel(
            settings.tenants_target,
            token=settings.internal_token.get_secret_value(),
            idempotent_methods=[GET_TENANT],
            default_timeout=settings.rpc_timeout_s,
            tracer_provider=tracer_provider,
        )
        dispatcher_channel = make_channel(
            settings.dispatcher_target,
            token=settings.internal_token.get_secret_value(),
            idempotent_methods=[ENQUEUE_BATCH],
            default_timeout=settings.rpc_timeout_s,
            tracer_provider=tracer_provider,
        )
        conversations_channel = make_channel(
            settings.conversations_target,
            token=settings.internal_token.get_secret_value(),
            idempotent_methods=[SET_OPT_OUT],
            default_timeout=settings.rpc_timeout_s,
            tracer_provider=tracer_provider,
        )
        store = OrderStore(backing.engine)
        metrics = OrdersMetrics(backing.registry)
        tenants = TenantCache(
            tenants_pb2_grpc.TenantRegistryStub(tenants_channel), settings.rpc_timeout_s
        )
        calls = Calls(
            store,
            dispatch_pb2_grpc.DispatcherStub(dispatcher_channel),
            conversations_pb2_grpc.ConversationStoreStub(conversations_channel),
            metrics,
            settings.rpc_timeout_s,
        )
        actions = OrderActions(
            store, tenants, calls, metrics, timedelta(seconds=settings.rating_prompt_delay_s)
        )
        turns = Turns(actions)
        cart_expiry = timedelta(seconds=settings.cart_expiry_s)
        processed_retention = timedelta(seconds=settings.processed_retention_s)
        instance = settings.instance_id or f"orders-{uuid.uuid4().hex[:8]}"

        async def clients(stop: asyncio.Event) -> None:
            """Holds the peers' channels open until the server has drained, then closes them."""
            await stop.wait()
            for open_channel in (tenants_channel, dispatcher_channel, conversations_channel):
                await open_channel.close(None)

        async def bot(stop: asyncio.Event) -> None:
            async with InvalidationListener(
                backing.redis, tenants.forget, on_reset=tenants.forget_all
            ):
                await turns.consumer(
                    backing.redis,
                    instance,
                    redelivery_s=settings.inbound_redelivery_s,
                    concurrency=settings.inbound_concurrency,
                ).run(stop)

        async def outbox(stop: asyncio.Event) -> None:
            await calls.run(stop, OUTBOX_INTERVAL_S)

        async def sweep_once() -> bool:
            now = datetime.now(UTC)
            expired = await store.expire_carts(now - cart_expiry, SWEEP_BATCH)
            metrics.carts_expired.inc(len(expired))
            forgotten = await store.forget_processed(now - processed_retention, SWEEP_BATCH)
            return SWEEP_BATCH in (len(expired), forgotten)

        async def sweep(stop: asyncio.Event) -> None:
            await repeat(sweep_once, stop, interval_s=settings.sweep_interval_s, name="sweep")

        async def measure_backlog() -> bool:
            age_s = await oldest_unhandled_age_s(
                backing.redis, INBOUND_STREAM, GROUP, now_ms=int(time.time() * 1000)
            )
            metrics.inbound_backlog.set(age_s)
            return False

        async def backlog(stop: asyncio.Event) -> None:
            await repeat(
                measure_backlog, stop, interval_s=settings.backlog_interval_s, name="backlog"
            )

        loops: dict[str, BackgroundLoop] = {
            "clients": clients,
            "bot": bot,
            "outbox": outbox,
            "sweep": sweep,
            "backlog": backlog,
        }
        return Wiring(
            [
                Service(
                    orders_pb2.DESCRIPTOR.services_by_name["OrderService"],
                    OrderServiceServicer(actions),
                    orders_pb2_grpc.add_OrderServiceServicer_to_server,
                )
            ],
            loops,
        )

    async with database_service(
        settings, wire, client_name="orders", registry=registry, tracer_provider=tracer_provider
    ) as server:
        yield server
