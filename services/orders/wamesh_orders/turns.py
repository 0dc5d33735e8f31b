"""The bot's side of the ``inbound`` stream: each customer message is one turn.

A turn runs in one transaction: it claims the message (a processed-message row), locks the
customer's session, lets the bot answer, applies what the bot decided (a cart, a confirmed
order, a cancellation, a rating, an opt-out, a staff move), and writes every message it
sends to the outbox. Only after that commit are the messages handed to the dispatcher; if
the dispatcher cannot be reached the entry is not acknowledged, and its redelivery finds the
message claimed, changes nothing and hands the outbox on again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import redis.asyncio as aioredis

from wamesh.conversations.v1 import conversations_pb2
from wamesh.dispatch.v1 import dispatch_pb2
from wamesh.events.v1 import events_pb2
from wamesh_kit.errors import FailedPrecondition
from wamesh_kit.keys import stream_key
from wamesh_kit.streams import StreamConsumer, StreamEntry
from wamesh_orders.actions import OrderActions
from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.dialogue import (
    AskStatus,
    BotConfig,
    CancelLatest,
    CartLine,
    ConfirmOrder,
    Effect,
    LatestOrder,
    OptIn,
    OptOut,
    Rate,
    Session,
    StaffMove,
    Stage,
    respond,
)
from wamesh_orders.lifecycle import Actor, State, allowed
from wamesh_orders.store import ENQUEUE, Call, Line, NewCart, OrderRecord, Transaction

log = logging.getLogger(__name__)

INBOUND_STREAM = stream_key("inbound")
GROUP = "orders"
# Deliveries that failed for the entry's own sake (a bug, a replica killed mid-turn) before
# the stream dead-letters it; an outage of Postgres, the dispatcher or tenants does not count.
MAX_DELIVERIES = 20


@dataclass
class Outcome:
    """What a turn decided beyond the bot's own replies."""

    replies: list[str]
    requests: list[dispatch_pb2.EnqueueRequest] = field(default_factory=list)
    session: Session | None = None


class Turns:
    def __init__(self, actions: OrderActions) -> None:
        self._actions = actions

    def consumer(
        self, redis: aioredis.Redis, name: str, *, redelivery_s: float, concurrency: int
    ) -> StreamConsumer[events_pb2.InboundMessageEvent]:
        """The ``inbound`` consumer: up to ``concurrency`` customers' turns at once, each
        customer's in stream order (turns of one customer would only queue on its session's
        lock, and could commit out of order)."""
        return StreamConsumer(
            redis,
            INBOUND_STREAM,
            group=GROUP,
            consumer=name,
            message_type=events_pb2.InboundMessageEvent,
            handler=self.handle,
            min_idle_ms=int(redelivery_s * 1000),
            max_deliveries=MAX_DELIVERIES,
            lane=_customer,
            concurrency=concurrency,
        )

    async def handle(self, entry: StreamEntry[events_pb2.InboundMessageEvent]) -> None:
        metrics = self._actions.metrics
        with metrics.turn_seconds.time():
            calls = await self.turn(entry.message)
            if calls is None:
                metrics.events.labels("repeated").inc()
                # Redelivered: what its first handling wrote may not have left yet.
                await self._actions.calls.flush(message_id=entry.message.message_id)
                return
            metrics.events.labels("answered" if calls else "silent").inc()
            await self._actions.calls.make(calls)

    async def turn(self, event: events_pb2.InboundMessageEvent) -> list[Call] | None:
        """Handles one message; the calls to make once it committed, None for a message
        already handled."""
        config = None if event.rate_limited else await self._actions.config(event.tenant_id)
        async with self._actions.store.transaction() as tx:
            if not await tx.claim_message(event.message_id):
                return None
            if config is None:
                return []  # over the customer's inbound limit: not answered
            calls = await self._turn(tx, config, event)
        if calls:
            async with self._actions.changed:
                self._actions.changed.notify_all()
        return calls

    async def _turn(
        self, tx: Transaction, config: BotConfig, event: events_pb2.InboundMessageEvent
    ) -> list[Call]:
        tenant_id, customer = event.tenant_id, event.customer_number
        stored = await tx.lock_session(tenant_id, customer)
        session = Session.from_json(stored) if stored else Session.new()
        cart = await tx.cart(tenant_id, customer)
        if session.lines and cart is None:
            # The cart expired (or was cancelled) since the customer last wrote.
            session = replace(session, lines=(), stage=Stage.BROWSING)
        latest = await tx.latest_order(tenant_id, customer)
        awaiting = (
            LatestOrder(latest.number or 0, latest.state.value)
            if latest is not None and latest.state is State.DELIVERED
            else None
        )
        text = event.content.body or event.content.button_text or event.content.button_payload
        turn = respond(
            config,
            session,
            text,
            from_staff=customer in config.staff_numbers,
            awaiting_rating=awaiting,
        )
        if event.customer_opted_out and not any(isinstance(e, OptIn) for e in turn.effects):
            # Opted out: nothing goes back but the answer to START.
            return []
        outcome = Outcome(list(turn.replies), session=turn.session)
        new_cart = NewCart(
            tenant_id,
            customer,
            event.sender_number,
            event.conversation_id,
            _currency(config),
            turn.language,
        )
        for effect in turn.effects:
            await self._apply(
                tx, config, event, effect, new_cart, latest, cart, outcome, turn.language
            )
        final = outcome.session or turn.session
        if (session_json := final.to_json()) != stored:
            await tx.save_session(tenant_id, customer, session_json)
        if not any(isinstance(e, ConfirmOrder) for e in turn.effects):
            await tx.save_cart(
                new_cart, [_line(line) for line in final.lines], final.method or "", final.address
            )
        replies = [
            dispatch_pb2.EnqueueRequest(
                tenant_id=tenant_id,
                idempotency_key=f"reply:{event.message_id}:{index}",
                sender_number=event.sender_number,
                recipient_number=customer,
                body=body,
            )
            for index, body in enumerate(outcome.replies)
        ]
        requests = [*replies, *outcome.requests]
        await tx.enqueue(requests)
        return [Call(r.idempotency_key, tenant_id, ENQUEUE, r) for r in requests]

    async def _apply(
        self,
        tx: Transaction,
        config: BotConfig,
        event: events_pb2.InboundMessageEvent,
        effect: Effect,
        new_cart: NewCart,
        latest: OrderRecord | None,
        cart: OrderRecord | None,
        outcome: Outcome,
        language: str,
    ) -> None:
        actions = self._actions
        if isinstance(effect, ConfirmOrder):
            lines = [_line(line) for line in effect.lines]
            draft = await tx.save_cart(new_cart, lines, effect.method, effect.address)
            if draft is not None:
                outcome.requests += await actions.transition(
                    tx, config, draft, State.CONFIRMED, actor=Actor.CUSTOMER
                )
        elif isinstance(effect, AskStatus):
            outcome.replies.append(_status(latest, language))
        elif isinstance(effect, CancelLatest):
            await self._cancel(tx, config, latest, cart, outcome, language)
        elif isinstance(effect, Rate):
            if latest is not None and latest.state is State.DELIVERED:
                requests = await actions.transition(
                    tx, config, latest, State.RATED, actor=Actor.CUSTOMER, rating=effect.stars
                )
                # The bot's answer to the rating goes once, as the RATED notification.
                answered = {request.body for request in requests}
                outcome.replies = [reply for reply in outcome.replies if reply not in answered]
                outcome.requests += requests
        elif isinstance(effect, OptOut | OptIn):
            await self._opt(tx, event, effect, outcome, language)
        elif isinstance(effect, StaffMove):
            await self._staff_move(tx, config, event, effect, outcome)

    async def _cancel(
        self,
        tx: Transaction,
        config: BotConfig,
        latest: OrderRecord | None,
        cart: OrderRecord | None,
        outcome: Outcome,
        language: str,
    ) -> None:
        target = latest if latest is not None and latest.state not in _DONE else None
        if target is None and cart is not None and cart.lines:
            target = cart
        if target is None:
            outcome.replies.append(render(language, "status.none"))
            return
        if not allowed(target.state, State.CANCELLED, actor=Actor.CUSTOMER, method=target.method):
            state = render(language, f"state.{target.state.value}")
            outcome.replies.append(
                render(language, "cancel.refused", number=target.number or 0, state=state)
            )
            return
        outcome.requests += await self._actions.transition(
            tx, config, target, State.CANCELLED, actor=Actor.CUSTOMER, note="cancelled by customer"
        )
        if target.state is State.DRAFT and outcome.session is not None:
            outcome.session = replace(outcome.session, lines=(), stage=Stage.BROWSING)

    async def _opt(
        self,
        tx: Transaction,
        event: events_pb2.InboundMessageEvent,
        effect: OptOut | OptIn,
        outcome: Outcome,
        language: str,
    ) -> None:
        opting_out = isinstance(effect, OptOut)
        if opting_out == event.customer_opted_out:
            return  # already so: confirmed when it happened
        await tx.set_opt_out(
            f"opt:{event.message_id}",
            conversations_pb2.SetOptOutRequest(
                tenant_id=event.tenant_id,
                participants=conversations_pb2.ConversationKey(
                    customer_number=event.customer_number, sender_number=event.sender_number
                ),
                opted_out=opting_out,
                reason="STOP" if opting_out else "START",
            ),
        )
        outcome.requests.append(
            dispatch_pb2.EnqueueRequest(
                tenant_id=event.tenant_id,
                idempotency_key=f"opt:{event.message_id}:confirmation",
                sender_number=event.sender_number,
                recipient_number=event.customer_number,
                body=render(language, "opt_out.confirmed" if opting_out else "opt_in.confirmed"),
                despite_opt_out=True,
            )
        )

    async def _staff_move(
        self,
        tx: Transaction,
        config: BotConfig,
        event: events_pb2.InboundMessageEvent,
        effect: StaffMove,
        outcome: Outcome,
    ) -> None:
        language = config.default_language
        order = await tx.order_by_number(event.tenant_id, effect.number)
        if order is None:
            outcome.replies.append(render(language, "staff.unknown_order", number=effect.number))
            return
        target = State(effect.target_state)
        try:
            outcome.requests += await self._actions.transition(
                tx, config, order, target, actor=Actor.STAFF, note=f"by {event.customer_number}"
            )
        except FailedPrecondition as refusal:
            outcome.replies.append(
                render(language, "staff.refused", number=effect.number, reason=refusal.message)
            )
            return
        state = render(language, f"state.{target.value}")
        outcome.replies.append(render(language, "staff.moved", number=effect.number, state=state))


_DONE = frozenset({State.DELIVERED, State.RATED, State.CANCELLED})


def _status(latest: OrderRecord | None, language: str) -> str:
    if latest is None:
        return render(language, "status.none")
    state = render(language, f"state.{latest.state.value}")
    return render(language, "status.current", number=latest.number or 0, state=state)


def _currency(config: BotConfig) -> str:
    return config.menu[0].currency if config.menu else "USD"


def _line(line: CartLine) -> Line:
    return Line(line.menu_item_id, line.name, line.quantity, line.unit_price_minor)


def _customer(event: events_pb2.InboundMessageEvent) -> tuple[str, str]:
    return event.tenant_id, event.customer_number
