"""OrderService over gRPC: validate, check who is asking, call the store, answer.

Every method takes the admin token or a tenant token for its own tenant (PERMISSION_DENIED
for another's), and the internal identity.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import grpc

from wamesh.orders.v1 import orders_pb2 as pb
from wamesh.orders.v1 import orders_pb2_grpc
from wamesh_kit.errors import NotFound
from wamesh_kit.paging import PageTokens
from wamesh_kit.rpc.auth import Access, require_tenant_access, requires
from wamesh_orders import validation
from wamesh_orders.actions import OrderActions
from wamesh_orders.lifecycle import State
from wamesh_orders.mapping import order_message, watch_message

Context = grpc.aio.ServicerContext[Any, Any]
CALLERS = Access.ADMIN | Access.TENANT | Access.INTERNAL
PAGES = PageTokens[tuple[datetime, str]](datetime, str)
# How often a watcher looks for events committed on other replicas.
WATCH_POLL_S = 1.0
WATCH_BATCH = 200


class OrderServiceServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, actions: OrderActions) -> None:
        self._actions = actions
        self._store = actions.store

    @requires(CALLERS)
    async def GetOrder(self, request: pb.GetOrderRequest, context: Context) -> pb.GetOrderResponse:
        tenant_id = _tenant(request.tenant_id)
        order = await self._store.order(tenant_id, validation.order_id(request.order_id))
        return pb.GetOrderResponse(order=order_message(order))

    @requires(CALLERS)
    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: Context
    ) -> pb.ListOrdersResponse:
        tenant_id = _tenant(request.tenant_id)
        size = validation.page_size(request.page_size)
        customer = validation.customer_number(request.customer_number, required=False)
        states = validation.states(request.states)
        query = ("orders", tenant_id, customer, ",".join(sorted(states)))
        after = PAGES.decode(request.page_token, *query)
        found = await self._store.list_orders(
            tenant_id, limit=size + 1, after=after, customer_number=customer, states=states
        )
        page = found[:size]
        token = ""
        if len(found) > size:
            token = PAGES.encode((page[-1].created_at, page[-1].id), *query)
        return pb.ListOrdersResponse(
            orders=[order_message(order) for order in page], next_page_token=token
        )

    @requires(CALLERS)
    async def AdvanceOrder(
        self, request: pb.AdvanceOrderRequest, context: Context
    ) -> pb.AdvanceOrderResponse:
        tenant_id = _tenant(request.tenant_id)
        order = await self._actions.move(
            tenant_id,
            validation.order_id(request.order_id),
            validation.target_state(request.target_state),
            expected_version=validation.expected_version(request.expected_version),
            note=validation.note(request.note, "note"),
        )
        return pb.AdvanceOrderResponse(order=order_message(order))

    @requires(CALLERS)
    async def CancelOrder(
        self, request: pb.CancelOrderRequest, context: Context
    ) -> pb.CancelOrderResponse:
        tenant_id = _tenant(request.tenant_id)
        order = await self._actions.move(
            tenant_id,
            validation.order_id(request.order_id),
            State.CANCELLED,
            expected_version=validation.expected_version(request.expected_version),
            note=validation.note(request.reason, "reason"),
        )
        return pb.CancelOrderResponse(order=order_message(order))

    @requires(CALLERS)
    async def GetCart(self, request: pb.GetCartRequest, context: Context) -> pb.GetCartResponse:
        tenant_id = _tenant(request.tenant_id)
        customer = validation.customer_number(request.customer_number, required=True)
        found = await self._store.list_orders(
            tenant_id, limit=1, after=None, customer_number=customer, states=[State.DRAFT]
        )
        if not found:
            raise NotFound(f"{customer} has no open cart", field="customer_number")
        return pb.GetCartResponse(cart=order_message(found[0]))

    @requires(CALLERS)
    async def WatchOrders(
        self, request: pb.WatchOrdersRequest, context: Context
    ) -> AsyncIterator[pb.WatchOrdersResponse]:
        tenant_id = _tenant(request.tenant_id)
        position = validation.position(request.after_position)
        if position == 0:
            position = await self._store.last_position(tenant_id)
        while True:
            events = await self._store.events_after(tenant_id, position, WATCH_BATCH)
            for event in events:
                yield watch_message(event)
                position = event.position
            if len(events) < WATCH_BATCH:
                await self._changed()

    async def _changed(self) -> None:
        changed = self._actions.changed
        async with changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), WATCH_POLL_S)


def _tenant(value: str) -> str:
    tenant_id = validation.tenant(value)
    require_tenant_access(tenant_id)
    return tenant_id
