"""The orders database: carts and orders, their transitions, the watch feed, the bot's
sessions and the outbox, all changed inside one transaction (``OrderStore.transaction``).

Every change of state goes through ``Transaction.transition``, which checks the lifecycle
table, bumps the version, writes the history row and (for confirmed orders) the watch
event: nothing else writes ``orders.state``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wamesh.conversations.v1 import conversations_pb2
from wamesh.dispatch.v1 import dispatch_pb2
from wamesh_kit.errors import FailedPrecondition, NotFound
from wamesh_orders import lifecycle
from wamesh_orders.lifecycle import Actor, State
from wamesh_orders.schema import customers, events, history, orders, outbox, processed, tenants


@dataclass(frozen=True)
class Line:
    menu_item_id: str
    name: str
    quantity: int
    unit_price_minor: int

    def to_json(self) -> dict[str, Any]:
        return {
            "menu_item_id": self.menu_item_id,
            "name": self.name,
            "quantity": self.quantity,
            "unit_price_minor": self.unit_price_minor,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Line:
        return cls(
            str(data["menu_item_id"]),
            str(data["name"]),
            int(data["quantity"]),
            int(data["unit_price_minor"]),
        )


@dataclass(frozen=True)
class Transition:
    version: int
    from_state: State
    to_state: State
    actor: str
    note: str
    occurred_at: datetime


@dataclass(frozen=True)
class OrderRecord:
    id: str
    tenant_id: str
    number: int | None
    customer_number: str
    sender_number: str
    conversation_id: str
    state: State
    lines: tuple[Line, ...]
    currency: str
    total_minor: int
    method: str
    address: str
    language: str
    rating: int
    version: int
    created_at: datetime
    updated_at: datetime
    history: tuple[Transition, ...] = field(default=())


@dataclass(frozen=True)
class NewCart:
    tenant_id: str
    customer_number: str
    sender_number: str
    conversation_id: str
    currency: str
    language: str


@dataclass(frozen=True)
class WatchEvent:
    position: int
    order: OrderRecord
    transition: Transition


def total_of(lines: Sequence[Line]) -> int:
    return sum(line.quantity * line.unit_price_minor for line in lines)


ENQUEUE = "enqueue"
OPT_OUT = "opt_out"


@dataclass(frozen=True)
class Call:
    """A call to another service the outbox holds until it is made."""

    key: str
    tenant_id: str
    kind: str
    request: dispatch_pb2.EnqueueRequest | conversations_pb2.SetOptOutRequest


def _call(row: sa.Row[Any]) -> Call:
    request = (
        dispatch_pb2.EnqueueRequest.FromString(row.request)
        if row.kind == ENQUEUE
        else conversations_pb2.SetOptOutRequest.FromString(row.request)
    )
    return Call(row.idempotency_key, row.tenant_id, row.kind, request)


def _order(row: sa.Row[Any]) -> OrderRecord:
    return OrderRecord(
        id=row.id,
        tenant_id=row.tenant_id,
        number=row.number,
        customer_number=row.customer_number,
        sender_number=row.sender_number,
        conversation_id=row.conversation_id,
        state=State(row.state),
        lines=tuple(Line.from_json(line) for line in row.lines),
        currency=row.currency,
        total_minor=row.total_minor,
        method=row.method,
        address=row.address,
        language=row.language,
        rating=row.rating,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _transition(row: sa.Row[Any]) -> Transition:
    return Transition(
        row.version,
        State(row.from_state),
        State(row.to_state),
        row.actor,
        row.note,
        row.occurred_at,
    )


# A turn's statements, built once and given their values at execution: building them per
# call (coercing each value, making its bind parameters, generating the cache key the
# compiled form is looked up by) was most of the replica's own CPU in its profile.
_CLAIM = insert(processed).on_conflict_do_nothing().returning(processed.c.message_id)
# An upsert that changes nothing still locks the row it finds: one round trip.
_LOCK_SESSION = (
    insert(customers)
    .values(session={})
    .on_conflict_do_update(
        index_elements=[customers.c.tenant_id, customers.c.customer_number],
        set_={"updated_at": customers.c.updated_at},
    )
    .returning(customers.c.session)
)
_SAVE_SESSION = customers.update().where(
    customers.c.tenant_id == sa.bindparam("of_tenant"),
    customers.c.customer_number == sa.bindparam("of_customer"),
)
_CUSTOMER_ORDERS = sa.select(orders).where(
    orders.c.tenant_id == sa.bindparam("tenant_id"),
    orders.c.customer_number == sa.bindparam("customer_number"),
)
_CART = _CUSTOMER_ORDERS.where(orders.c.state == State.DRAFT.value).limit(1).with_for_update()
_LATEST_ORDER = (
    _CUSTOMER_ORDERS.where(orders.c.state != State.DRAFT.value)
    .order_by(orders.c.created_at.desc(), orders.c.id.desc())
    .limit(1)
    .with_for_update()
)
_NEW_CART = orders.insert().returning(*orders.c)
_UPDATE_CART = (
    orders.update()
    .where(orders.c.id == sa.bindparam("of_order"))
    .values(version=orders.c.version + 1)
    .returning(*orders.c)
)
_WRITE_CALLS = insert(outbox).on_conflict_do_nothing()
_FORGET_CALLS = outbox.delete().where(
    outbox.c.idempotency_key == sa.any_(sa.bindparam("keys", type_=postgresql.ARRAY(sa.Text)))
)


class Transaction:
    """One database transaction of the orders service; every method runs inside it."""

    def __init__(self, connection: AsyncConnection, now: datetime) -> None:
        self._connection = connection
        self.now = now
        # The inbound message this transaction is the turn of, once claimed.
        self._message_id: str | None = None
        # Carts read (and locked) in this transaction, as they stand now: (tenant, customer)
        # → the DRAFT order, or None. Nobody else can change a locked cart before commit.
        self._carts: dict[tuple[str, str], OrderRecord | None] = {}

    async def claim_message(self, message_id: str) -> bool:
        """True the first time a message is seen; False for a redelivery or a replay."""
        claimed = await self._connection.execute(
            _CLAIM, {"message_id": message_id, "processed_at": self.now}
        )
        self._message_id = message_id
        return claimed.first() is not None

    async def lock_session(self, tenant_id: str, customer_number: str) -> dict[str, Any] | None:
        """The customer's bot session, locked until the end of the transaction (one turn of
        one customer at a time, whichever replica handles it); None for a new customer."""
        values = {"tenant_id": tenant_id, "customer_number": customer_number}
        result = await self._connection.execute(_LOCK_SESSION, {**values, "updated_at": self.now})
        session: dict[str, Any] = result.scalar_one()
        return session or None

    async def save_session(
        self, tenant_id: str, customer_number: str, session: dict[str, Any]
    ) -> None:
        await self._connection.execute(
            _SAVE_SESSION,
            {
                "of_tenant": tenant_id,
                "of_customer": customer_number,
                "session": session,
                "updated_at": self.now,
            },
        )

    async def latest_order(self, tenant_id: str, customer_number: str) -> OrderRecord | None:
        """The customer's newest order past the cart, locked."""
        values = {"tenant_id": tenant_id, "customer_number": customer_number}
        row = (await self._connection.execute(_LATEST_ORDER, values)).first()
        return None if row is None else _order(row)

    async def cart(self, tenant_id: str, customer_number: str) -> OrderRecord | None:
        """The customer's cart (its DRAFT order), locked; read once per transaction."""
        key = (tenant_id, customer_number)
        if key not in self._carts:
            values = {"tenant_id": tenant_id, "customer_number": customer_number}
            row = (await self._connection.execute(_CART, values)).first()
            self._carts[key] = None if row is None else _order(row)
        return self._carts[key]

    async def save_cart(
        self, cart: NewCart, lines: Sequence[Line], method: str, address: str
    ) -> OrderRecord | None:
        """The customer's cart (a DRAFT order) made to hold ``lines``; none is kept for an
        empty cart that never existed. Carts have no history until they move."""
        existing = await self.cart(cart.tenant_id, cart.customer_number)
        values = {
            "lines": [line.to_json() for line in lines],
            "total_minor": total_of(lines),
            "method": method,
            "address": address,
            "language": cart.language,
            "sender_number": cart.sender_number,
            "updated_at": self.now,
        }
        if existing is None:
            if not lines:
                return None
            new = {
                "id": str(uuid.uuid4()),
                "tenant_id": cart.tenant_id,
                "number": None,
                "customer_number": cart.customer_number,
                "conversation_id": cart.conversation_id,
                "state": State.DRAFT.value,
                "currency": cart.currency,
                "rating": 0,
                "version": 1,
                "created_at": self.now,
            }
            row = (await self._connection.execute(_NEW_CART, {**new, **values})).one()
        else:
            changes = {"of_order": existing.id, **values}
            row = (await self._connection.execute(_UPDATE_CART, changes)).one()
        saved = _order(row)
        self._carts[(cart.tenant_id, cart.customer_number)] = saved
        return saved

    async def order(
        self, tenant_id: str, order_id: str, *, lock: bool = False, with_history: bool = False
    ) -> OrderRecord:
        query = sa.select(orders).where(orders.c.tenant_id == tenant_id, orders.c.id == order_id)
        row = (await self._connection.execute(query.with_for_update() if lock else query)).first()
        if row is None:
            raise NotFound(f"tenant {tenant_id} has no order {order_id}", field="order_id")
        found = _order(row)
        return await self._with_history(found) if with_history else found

    async def order_by_number(self, tenant_id: str, number: int) -> OrderRecord | None:
        row = (
            await self._connection.execute(
                sa.select(orders)
                .where(orders.c.tenant_id == tenant_id, orders.c.number == number)
                .with_for_update()
            )
        ).first()
        return None if row is None else _order(row)

    async def _with_history(self, order: OrderRecord) -> OrderRecord:
        rows = await self._connection.execute(
            sa.select(history).where(history.c.order_id == order.id).order_by(history.c.version)
        )
        return replace(order, history=tuple(_transition(row) for row in rows))

    async def transition(
        self,
        order: OrderRecord,
        target: State,
        *,
        actor: Actor,
        note: str = "",
        expected_version: int | None = None,
        rating: int | None = None,
    ) -> OrderRecord:
        """Moves a locked order to ``target`` as the lifecycle allows, or raises
        FailedPrecondition (a stale ``expected_version``, a move the table forbids) having
        changed nothing."""
        if expected_version is not None and expected_version != order.version:
            raise FailedPrecondition(
                f"order {order.id} is at version {order.version}, not {expected_version}",
                field="expected_version",
            )
        lifecycle.check(order.state, target, actor=actor, method=order.method)
        values: dict[str, Any] = {
            "state": target.value,
            "version": order.version + 1,
            "updated_at": self.now,
        }
        if target is State.CONFIRMED:
            values["number"] = await self._next(order.tenant_id, tenants.c.last_order_number)
        if rating is not None:
            values["rating"] = rating
        row = (
            await self._connection.execute(
                orders.update()
                .where(orders.c.id == order.id, orders.c.version == order.version)
                .values(**values)
                .returning(*orders.c)
            )
        ).one()
        moved = _order(row)
        if order.state is State.DRAFT:
            self._carts[(order.tenant_id, order.customer_number)] = None
        await self._connection.execute(
            history.insert().values(
                order_id=order.id,
                version=moved.version,
                from_state=order.state.value,
                to_state=target.value,
                actor=actor.value,
                note=note,
                occurred_at=self.now,
            )
        )
        if moved.number is not None:
            position = await self._next(order.tenant_id, tenants.c.last_position)
            await self._connection.execute(
                events.insert().values(
                    tenant_id=order.tenant_id,
                    position=position,
                    order_id=order.id,
                    version=moved.version,
                )
            )
        return moved

    async def _next(self, tenant_id: str, counter: sa.Column[Any]) -> int:
        """The tenant's next value of a counter. The row stays locked until commit, so the
        values rise in commit order: a reader never sees a later one before an earlier one."""
        others = {c.name: 0 for c in (tenants.c.last_order_number, tenants.c.last_position)}
        others[counter.name] = 1
        statement = (
            insert(tenants)
            .values(tenant_id=tenant_id, **others)
            .on_conflict_do_update(
                index_elements=[tenants.c.tenant_id], set_={counter.name: counter + 1}
            )
            .returning(counter)
        )
        value: int = (await self._connection.execute(statement)).scalar_one()
        return value

    async def expire_carts(self, older_than: datetime, limit: int) -> list[OrderRecord]:
        rows = (
            await self._connection.execute(
                sa.select(orders)
                .where(orders.c.state == State.DRAFT.value, orders.c.updated_at < older_than)
                .order_by(orders.c.updated_at)
                .limit(limit)
                # Another replica's sweep, or the customer's own turn, holds the others.
                .with_for_update(skip_locked=True)
            )
        ).all()
        return [
            await self.transition(_order(row), State.CANCELLED, actor=Actor.SYSTEM, note="expired")
            for row in rows
        ]

    async def enqueue(self, requests: Sequence[dispatch_pb2.EnqueueRequest]) -> None:
        """Messages to hand the dispatcher once this transaction commits."""
        await self._call([Call(r.idempotency_key, r.tenant_id, ENQUEUE, r) for r in requests])

    async def set_opt_out(self, key: str, request: conversations_pb2.SetOptOutRequest) -> None:
        """A customer's STOP or START, to tell the conversation store once this commits."""
        await self._call([Call(key, request.tenant_id, OPT_OUT, request)])

    async def _call(self, calls: Sequence[Call]) -> None:
        if not calls:
            return
        await self._connection.execute(
            _WRITE_CALLS,
            [
                {
                    "idempotency_key": call.key,
                    "tenant_id": call.tenant_id,
                    "kind": call.kind,
                    "message_id": self._message_id,
                    "request": call.request.SerializeToString(),
                    "created_at": self.now,
                }
                for call in calls
            ],
        )


class OrderStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._engine.begin() as connection:
            yield Transaction(connection, datetime.now(UTC))

    async def order(self, tenant_id: str, order_id: str) -> OrderRecord:
        async with self.transaction() as tx:
            return await tx.order(tenant_id, order_id, with_history=True)

    async def list_orders(
        self,
        tenant_id: str,
        *,
        limit: int,
        after: tuple[datetime, str] | None,
        customer_number: str = "",
        states: Sequence[State] = (),
    ) -> list[OrderRecord]:
        query = sa.select(orders).where(orders.c.tenant_id == tenant_id)
        if customer_number:
            query = query.where(orders.c.customer_number == customer_number)
        if states:
            query = query.where(orders.c.state.in_([state.value for state in states]))
        if after is not None:
            moment, order_id = after
            query = query.where(
                sa.tuple_(orders.c.created_at, orders.c.id)
                < sa.tuple_(sa.literal(moment, sa.DateTime(timezone=True)), sa.literal(order_id))
            )
        query = query.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(limit)
        async with self._engine.connect() as connection:
            found = [_order(row) for row in await connection.execute(query)]
            return await _with_histories(connection, found)

    async def events_after(self, tenant_id: str, position: int, limit: int) -> list[WatchEvent]:
        """The tenant's watch events after ``position``, oldest first, each with its order as
        it stood right after that event."""
        async with self._engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(events.c.position, events.c.version.label("event_version"), orders)
                    .join(orders, orders.c.id == events.c.order_id)
                    .where(events.c.tenant_id == tenant_id, events.c.position > position)
                    .order_by(events.c.position)
                    .limit(limit)
                )
            ).all()
            current = await _with_histories(connection, [_order(row) for row in rows])
        return [
            _as_of(row.position, row.event_version, order)
            for row, order in zip(rows, current, strict=True)
        ]

    async def last_position(self, tenant_id: str) -> int:
        async with self._engine.connect() as connection:
            value = (
                await connection.execute(
                    sa.select(tenants.c.last_position).where(tenants.c.tenant_id == tenant_id)
                )
            ).scalar_one_or_none()
        return int(value or 0)

    async def pending_calls(self, limit: int, *, message_id: str | None = None) -> list[Call]:
        """The oldest calls not yet made (only those of ``message_id``'s turn, if given), in
        the order they were written."""
        query = sa.select(outbox).order_by(outbox.c.seq).limit(limit)
        if message_id is not None:
            query = query.where(outbox.c.message_id == message_id)
        async with self._engine.connect() as connection:
            return [_call(row) for row in await connection.execute(query)]

    async def made(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        # One statement needs no transaction of its own: autocommit spares BEGIN and COMMIT.
        async with self._engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(_FORGET_CALLS, {"keys": list(keys)})

    async def expire_carts(self, older_than: datetime, limit: int) -> list[OrderRecord]:
        """Cancels (reason ``expired``) up to ``limit`` carts untouched since ``older_than``.
        Nothing is sent; the bot notices the cart is gone on the customer's next message."""
        async with self.transaction() as tx:
            return await tx.expire_carts(older_than, limit)

    async def forget_processed(self, older_than: datetime, limit: int) -> int:
        """Forgets up to ``limit`` of the inbound messages handled before ``older_than``,
        oldest first; how many."""
        oldest = (
            sa.select(processed.c.message_id)
            .where(processed.c.processed_at < older_than)
            .order_by(processed.c.processed_at)
            .limit(limit)
        )
        async with self._engine.begin() as connection:
            result = await connection.execute(
                processed.delete().where(processed.c.message_id.in_(oldest))
            )
        return result.rowcount or 0


async def _with_histories(
    connection: AsyncConnection, found: list[OrderRecord]
) -> list[OrderRecord]:
    if not found:
        return found
    rows = await connection.execute(
        sa.select(history)
        .where(history.c.order_id.in_({order.id for order in found}))
        .order_by(history.c.order_id, history.c.version)
    )
    by_order: dict[str, list[Transition]] = {}
    for row in rows:
        by_order.setdefault(row.order_id, []).append(_transition(row))
    return [replace(order, history=tuple(by_order.get(order.id, ()))) for order in found]


def _as_of(position: int, version: int, order: OrderRecord) -> WatchEvent:
    past = tuple(entry for entry in order.history if entry.version <= version)
    last = past[-1]
    return WatchEvent(
        position,
        replace(
            order,
            history=past,
            state=last.to_state,
            version=version,
            rating=order.rating if last.to_state is State.RATED else 0,
            updated_at=last.occurred_at,
        ),
        last,
    )
