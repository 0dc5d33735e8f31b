"""Staff moving orders (AdvanceOrder, CancelOrder, and ``#1042 preparing`` from a staff
number): the transition and its notifications in one transaction, the notifications handed
to the dispatcher right after it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from wamesh.dispatch.v1 import dispatch_pb2
from wamesh_kit.errors import Unavailable
from wamesh_kit.tenant_cache import TenantCache
from wamesh_orders import notifications
from wamesh_orders.bot.dialogue import BotConfig
from wamesh_orders.calls import Calls
from wamesh_orders.config import bot_config
from wamesh_orders.lifecycle import Actor, State
from wamesh_orders.metrics import OrdersMetrics
from wamesh_orders.store import ENQUEUE, Call, OrderRecord, OrderStore, Transaction

log = logging.getLogger(__name__)


class OrderActions:
    def __init__(
        self,
        store: OrderStore,
        tenants: TenantCache,
        calls: Calls,
        metrics: OrdersMetrics,
        rating_delay: timedelta,
    ) -> None:
        self.store = store
        self.tenants = tenants
        self.calls = calls
        self.metrics = metrics
        self.rating_delay = rating_delay
        # Woken after every committed transition: WatchOrders streams on this replica answer
        # at once; those on others notice on their next poll.
        self.changed = asyncio.Condition()

    async def config(self, tenant_id: str) -> BotConfig:
        return bot_config(await self.tenants.get(tenant_id))

    async def move(
        self,
        tenant_id: str,
        order_id: str,
        target: State,
        *,
        expected_version: int,
        note: str,
    ) -> OrderRecord:
        """A staff member's move; an order already in ``target`` at ``expected_version`` is
        returned unchanged."""
        config = await self.config(tenant_id)
        async with self.store.transaction() as tx:
            order = await tx.order(tenant_id, order_id, lock=True)
            requests: list[dispatch_pb2.EnqueueRequest] = []
            if not (order.state is target and order.version == expected_version):
                requests = await self.transition(
                    tx,
                    config,
                    order,
                    target,
                    actor=Actor.STAFF,
                    note=note,
                    expected_version=expected_version,
                )
            moved = await tx.order(tenant_id, order_id, with_history=True)
        await self.committed(requests)
        return moved

    async def transition(
        self,
        tx: Transaction,
        config: BotConfig,
        order: OrderRecord,
        target: State,
        *,
        actor: Actor,
        note: str = "",
        expected_version: int | None = None,
        rating: int | None = None,
    ) -> list[dispatch_pb2.EnqueueRequest]:
        """Moves ``order`` inside ``tx`` and writes the notifications of its new state; returns
        them (hand them to ``committed`` once ``tx`` has committed)."""
        moved = await tx.transition(
            order, target, actor=actor, note=note, expected_version=expected_version, rating=rating
        )
        requests = notifications.for_transition(
            moved, config, note=note, now=tx.now, rating_delay=self.rating_delay
        )
        await tx.enqueue(requests)
        self.metrics.transitions.labels(target.value, actor.value).inc()
        return requests

    async def committed(self, requests: Sequence[dispatch_pb2.EnqueueRequest]) -> None:
        """After a commit: wakes the watchers and hands the messages on. A dispatcher that
        cannot be reached costs nothing here: the outbox loop sends them later."""
        async with self.changed:
            self.changed.notify_all()
        try:
            await self.calls.make(
                [Call(r.idempotency_key, r.tenant_id, ENQUEUE, r) for r in requests]
            )
        except Unavailable as error:
            log.warning("notifications wait in the outbox: %s", error)
