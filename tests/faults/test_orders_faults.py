"""The bot's promises under faults, judged message by message.

Real processes (tools/faults/orders_mesh.py): tenants, the workers registry, conversations,
the Twilio sandbox, an intake-only dispatcher replica (it queues jobs and sends nothing: the
test reads the queue) and two orders replicas consuming ``inbound``. The test stands in for
the conversation store and publishes each customer's messages on ``inbound``, the next one
once the previous one is handled: a customer reads the answer before writing again, and that
keeps each customer's turns in order, which the stream does not promise across replicas and
redeliveries.

240 customers of 3 shops follow four scripts (order for pickup, for delivery, twice, or
browse and abandon the checkout): 2,160 messages, some 240 of them on the stream at any time,
several batches' worth (a consumer reads 64). While they are handled:

- an orders replica is frozen (SIGSTOP) for longer than the redelivery delay, holding entries
  it has read: the other replica reclaims them, and the frozen one, thawed, handles them too;
- both orders replicas are SIGKILLed holding entries; one is started again under its
  consumer name, the other under a new one;
- the dispatcher is SIGKILLed and started again: until it serves, replies wait in the outbox
  and the entries that wrote them stay pending.

Then every message is judged: claimed once in ``processed_messages``, and the dispatcher
holds exactly the replies the pure bot gives it in that conversation (``reply:{id}:{n}``, the
same bodies, none missing, none extra); every confirmed checkout is one CONFIRMED order as
checked out, told to the customer and to the staff once (``order:{id}:confirmed``); and in
the end the outbox is empty, the group has nothing pending and nothing was dead-lettered.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.services.orders.orders_testkit import MENU, menu_item
from tests.services.tenants.tenants_testkit import unique_number
from tools.faults.dispatch_mesh import JobFate
from tools.faults.orders_mesh import Inbound, Lines, OrdersDb, OrdersMesh, PlacedOrder, Shop
from wamesh.conversations.v1 import conversations_pb2
from wamesh.events.v1 import events_pb2
from wamesh.tenants.v1 import tenants_pb2
from wamesh_kit.timestamps import timestamp
from wamesh_orders.bot.catalogue import render
from wamesh_orders.bot.dialogue import (
    AskStatus,
    BotConfig,
    CartLine,
    ConfirmOrder,
    Session,
    respond,
)
from wamesh_orders.config import bot_config

REPO_ROOT = Path(__file__).resolve().parents[2]
SHOPS, CUSTOMERS = 3, 240
SCRIPTS = (
    ("hi", "2 x 1", "cart", "checkout", "2", "confirm", "status"),
    ("hi", "1 x 2", "1 x 3", "cart", "checkout", "1", "Calle Mayor 5", "confirm", "status"),
    (
        *("hi", "2 x 1", "checkout", "2", "confirm", "status"),
        *("menu", "1 x 3", "checkout", "2", "confirm", "status"),
    ),
    ("hi", "menu", "3 x 2", "cart", "checkout", "cancel", "status", "help"),
)
# Short, so the faults' entries come back within the run; production waits 30 s.
REDELIVERY_S = 1.0
# Frozen at least this long (a few redelivery delays), at most FREEZE_MAX_S.
FREEZE_S, FREEZE_MAX_S = 3.0, 10.0
# The faults, each once this share of the messages is handled.
FREEZE_AT, CRASH_AT, DISPATCHER_AT = 0.15, 0.4, 0.65
# No message handled for this long: the run has stopped, and what is left is judged.
STALL_S = 20.0
SETTLE_S = 30.0

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Step:
    """One message of a script, and what the bot does with it at that point."""

    text: str
    replies: tuple[str, ...]
    confirms: ConfirmOrder | None
    status_of: int | None  # asks for its status: how many orders it has confirmed by then
    language: str


@dataclass(frozen=True)
class Conversation:
    steps: list[Step]
    cart: Lines  # what the customer's cart holds at the end


def replay(config: BotConfig, script: tuple[str, ...]) -> Conversation:
    """The script through the pure bot, a fresh session carried from turn to turn."""
    session, confirmed, steps = Session.new(), 0, []
    for text in script:
        turn = respond(config, session, text, from_staff=False, awaiting_rating=None)
        confirms = next((e for e in turn.effects if isinstance(e, ConfirmOrder)), None)
        asks = any(isinstance(e, AskStatus) for e in turn.effects)
        if any(not isinstance(e, ConfirmOrder | AskStatus) for e in turn.effects):
            raise ValueError(f"{text!r} has effects this test does not model: {turn.effects}")
        confirmed += confirms is not None
        steps.append(Step(text, turn.replies, confirms, confirmed if asks else None, turn.language))
        session = turn.session
    return Conversation(steps, lines_of(session.lines))


def lines_of(lines: tuple[CartLine, ...]) -> Lines:
    return tuple((line.menu_item_id, line.quantity, line.unit_price_minor) for line in lines)


@dataclass
class Customer:
    shop: Shop
    number: str
    conversation_id: str
    steps: list[Step]
    cart: Lines
    message_ids: list[str]
    written: int = 0  # messages published so far

    def event(self, index: int) -> events_pb2.InboundMessageEvent:
        """Message ``index`` as the conversation store publishes it."""
        now = timestamp(datetime.now(UTC))
        return events_pb2.InboundMessageEvent(
            tenant_id=self.shop.tenant_id,
            conversation_id=self.conversation_id,
            message_id=self.message_ids[index],
            customer_number=self.number,
            sender_number=self.shop.sender,
            content=conversations_pb2.InboundMessage(
                message_sid="SM" + uuid.uuid4().hex,
                from_address=f"whatsapp:{self.number}",
                to_address=f"whatsapp:{self.shop.sender}",
                body=self.steps[index].text,
                profile_name="Ana",
                wa_id=self.number.removeprefix("+"),
                message_type="text",
            ),
            received_at=now,
            recorded_at=now,
        )


def bot_settings() -> tenants_pb2.BotSettings:
    return tenants_pb2.BotSettings(
        menu=[menu_item(item_id, name, minor) for item_id, name, minor in MENU],
        greeting="Welcome to Casa Pepe!",
        promo_text="Thanks! 10% off with code PEPE10",
        apology_text="We are sorry it was not perfect.",
        staff_numbers=[unique_number()],
    )


def plan_customers(shops: list[Shop]) -> list[Customer]:
    scripts = {
        (shop.tenant_id, n): replay(bot_config(shop.tenant), script)
        for shop in shops
        for n, script in enumerate(SCRIPTS)
    }
    run = str(uuid.uuid4().int)[:5]
    customers = []
    for index in range(CUSTOMERS):
        shop = shops[index % len(shops)]
        conversation = scripts[(shop.tenant_id, index % len(SCRIPTS))]
        customers.append(
            Customer(
                shop=shop,
                number=f"+4916{run}{index:04d}",
                conversation_id=str(uuid.uuid4()),
                steps=conversation.steps,
                cart=conversation.cart,
                message_ids=[str(uuid.uuid4()) for _ in conversation.steps],
            )
        )
    return customers


# -- the run


@dataclass
class Faults:
    """What each fault found, and how far the run was when it came."""

    notes: list[str] = field(default_factory=list)
    frozen_holding: int = 0  # entries the frozen replica had read and not acknowledged
    taken_from_frozen: int = 0  # of those, reclaimed by the other replica while it was frozen
    killed_holding: int = 0
    dispatcher_down_s: float = 0.0
    outbox_peak: int = 0  # the most calls the outbox held while the dispatcher was down


@dataclass
class Run:
    customers: list[Customer]
    faults: Faults
    stalled: str  # why the customers stopped before the end; empty when they all finished
    seconds: float
    handled: list[str]  # every claimed message id, once per row
    orders: list[PlacedOrder]
    replies: dict[str, JobFate]
    notices: dict[str, JobFate]
    outbox_left: int
    pending: dict[str, int]
    dead_letters: int

    @property
    def messages(self) -> int:
        return sum(len(customer.steps) for customer in self.customers)


@dataclass
class Progress:
    handled: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def reaches(self, share: float, total: int) -> None:
        while self.handled < share * total:
            if self.done.is_set():
                raise RuntimeError(f"the run ended before {share:.0%} of it was handled")
            await asyncio.sleep(0.05)


async def converse(mesh: OrdersMesh, customers: list[Customer], progress: Progress) -> str:
    """Every customer writes their script, each message once the one before is handled;
    empty when all are done, else why they stopped."""
    waiting: dict[str, Customer] = {}
    async with mesh.inbound() as inbound, mesh.orders_db() as db:

        async def write(customer: Customer) -> None:
            waiting[customer.message_ids[customer.written]] = customer
            await inbound.publish(customer.event(customer.written))
            customer.written += 1

        for customer in customers:
            await write(customer)
        last_handled = time.monotonic()
        while waiting:
            mesh.check_alive()
            for message_id in await db.handled(waiting):
                customer = waiting.pop(message_id)
                progress.handled += 1
                last_handled = time.monotonic()
                if customer.written < len(customer.steps):
                    await write(customer)
            if time.monotonic() - last_handled > STALL_S:
                return f"no message handled for {STALL_S:.0f} s with {len(waiting)} waiting"
            await asyncio.sleep(0.05)
    return ""


async def holding(inbound: Inbound, names: tuple[str, ...], timeout_s: float = 10) -> int:
    """Once ``names`` hold entries they have not acknowledged: how many (0 if they never do)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pending = await inbound.pending()
        held = sum(pending.get(name, 0) for name in names)
        if held or time.monotonic() > deadline:
            return held
        await asyncio.sleep(0.01)


async def inflict(mesh: OrdersMesh, total: int, progress: Progress, faults: Faults) -> None:
    """The three faults, each once its share of the messages is handled."""
    async with mesh.inbound() as inbound, mesh.orders_db() as db:
        await progress.reaches(FREEZE_AT, total)
        await freeze_a_replica(mesh, inbound, progress, faults)
        await progress.reaches(CRASH_AT, total)
        await kill_both_replicas(mesh, inbound, progress, faults)
        await progress.reaches(DISPATCHER_AT, total)
        await kill_the_dispatcher(mesh, db, progress, faults)


async def freeze_a_replica(
    mesh: OrdersMesh, inbound: Inbound, progress: Progress, faults: Faults
) -> None:
    """orders-a frozen with entries read: orders-b reclaims them, then both handle them."""
    faults.frozen_holding = await holding(inbound, ("orders-a",))
    frozen_at, handled = time.monotonic(), progress.handled
    with mesh.frozen("orders-a"):
        await asyncio.sleep(FREEZE_S)
        # Longer if need be: orders-b reclaims only between two of its own batches.
        deadline = frozen_at + FREEZE_MAX_S
        while (left := (await inbound.pending()).get("orders-a", 0)) >= faults.frozen_holding:
            if not left or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    faults.taken_from_frozen = max(faults.frozen_holding - left, 0)
    faults.notes.append(
        f"orders-a frozen {time.monotonic() - frozen_at:.1f} s at {handled} handled, holding "
        f"{faults.frozen_holding} entries ({faults.taken_from_frozen} taken by orders-b)"
    )


async def kill_both_replicas(
    mesh: OrdersMesh, inbound: Inbound, progress: Progress, faults: Faults
) -> None:
    """Both replicas die holding entries; one returns under its name, one under a new one."""
    faults.killed_holding = await holding(inbound, ("orders-a", "orders-b"))
    killed_at, handled = time.monotonic(), progress.handled
    mesh.kill("orders-a")
    mesh.kill("orders-b")
    await asyncio.sleep(0.5)
    mesh.restart("orders-a")
    mesh.start_orders("orders-c")
    await mesh.until_serving("orders-a")
    await mesh.until_serving("orders-c")
    faults.notes.append(
        f"orders-a and orders-b SIGKILLed at {handled} handled, holding "
        f"{faults.killed_holding} entries; orders-a restarted and orders-c started, both "
        f"serving {time.monotonic() - killed_at:.1f} s after the kill"
    )


async def kill_the_dispatcher(
    mesh: OrdersMesh, db: OrdersDb, progress: Progress, faults: Faults
) -> None:
    """The dispatcher dies and starts again: until it serves, replies wait in the outbox."""
    down, handled = time.monotonic(), progress.handled
    mesh.kill("intake")
    mesh.restart("intake")
    serving = asyncio.create_task(mesh.until_serving("intake"))
    while not serving.done():
        faults.outbox_peak = max(faults.outbox_peak, await db.outbox_left())
        await asyncio.sleep(0.1)
    await serving
    faults.dispatcher_down_s = time.monotonic() - down
    faults.notes.append(
        f"the dispatcher SIGKILLed at {handled} handled and restarted, serving again "
        f"{faults.dispatcher_down_s:.1f} s later, with up to {faults.outbox_peak} calls "
        "waiting in the outbox meanwhile"
    )


async def settle(mesh: OrdersMesh) -> None:
    """Until the outbox is empty and the group has nothing pending (or SETTLE_S passed)."""
    deadline = time.monotonic() + SETTLE_S
    async with mesh.inbound() as inbound, mesh.orders_db() as db:
        while time.monotonic() < deadline:
            if await db.outbox_left() == 0 and not any((await inbound.pending()).values()):
                return
            await asyncio.sleep(0.2)


async def run_with_faults(mesh: OrdersMesh) -> Run:
    shops = [await mesh.create_shop(bot_settings()) for _ in range(SHOPS)]
    customers = plan_customers(shops)
    total = sum(len(customer.steps) for customer in customers)
    faults, progress = Faults(), Progress()
    started = time.monotonic()
    faulting = asyncio.create_task(inflict(mesh, total, progress, faults))
    try:
        stalled = await converse(mesh, customers, progress)
    except BaseException:
        faulting.cancel()
        raise
    finally:
        progress.done.set()
    try:
        await faulting
    except RuntimeError as early:
        stalled = stalled or str(early)
    if not stalled:
        await settle(mesh)
    seconds = time.monotonic() - started
    async with mesh.inbound() as inbound, mesh.orders_db() as db:
        return Run(
            customers=customers,
            faults=faults,
            stalled=stalled,
            seconds=seconds,
            handled=await db.every_handled(),
            orders=await db.orders(),
            replies=await mesh.jobs("reply:"),
            notices=await mesh.jobs("order:"),
            outbox_left=await db.outbox_left(),
            pending=await inbound.pending(),
            dead_letters=await inbound.dead_letters(),
        )


@pytest.fixture(scope="module")
def mesh(request: pytest.FixtureRequest) -> Iterator[OrdersMesh]:
    data_dir = REPO_ROOT / ".wamesh" / "faults" / uuid.uuid4().hex[:12]
    failed_before = request.session.testsfailed
    with OrdersMesh(
        data_dir, consumers=("orders-a", "orders-b"), redelivery_s=REDELIVERY_S
    ) as running:
        yield running
    # Kept after a failure: the processes' logs explain it.
    if request.session.testsfailed == failed_before:
        shutil.rmtree(data_dir, ignore_errors=True)
    else:
        print(f"\nthe orders mesh's logs are kept in {data_dir}")


@pytest.fixture(scope="module")
def run(mesh: OrdersMesh) -> Run:
    return asyncio.run(run_with_faults(mesh))


# -- the judgement


@dataclass
class Verdict:
    """Each message's fate, and each customer's orders'; every list names what failed."""

    answered: int = 0  # claimed once, the bot's replies queued, no more, no fewer
    never_handled: list[str] = field(default_factory=list)
    claimed_twice: list[str] = field(default_factory=list)
    replies_missing: list[str] = field(default_factory=list)
    replies_differ: list[str] = field(default_factory=list)
    replies_extra: list[str] = field(default_factory=list)
    ordered_once: int = 0  # confirmed checkouts: one order as checked out, told once
    orders_missing: list[str] = field(default_factory=list)
    orders_extra: list[str] = field(default_factory=list)
    orders_differ: list[str] = field(default_factory=list)
    not_told: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)  # jobs or claims no message accounts for

    def message_failures(self) -> dict[str, list[str]]:
        return _named(
            ("never handled", self.never_handled),
            ("claimed more than once", self.claimed_twice),
            ("replies missing", self.replies_missing),
            ("replies not the bot's", self.replies_differ),
            ("replies beyond the bot's", self.replies_extra),
            ("jobs or claims no message accounts for", self.strays),
        )

    def order_failures(self) -> dict[str, list[str]]:
        return _named(
            ("confirmed checkouts without their order", self.orders_missing),
            ("orders beyond the confirmed checkouts", self.orders_extra),
            ("orders not as checked out", self.orders_differ),
            ("orders not told to the customer and staff once", self.not_told),
        )

    def summary(self, run: Run) -> str:
        confirmed = sum(step.confirms is not None for c in run.customers for step in c.steps)
        return (
            f"{run.messages} messages from {len(run.customers)} customers in {run.seconds:.1f} s: "
            f"{self.answered} handled once and answered as the bot would, "
            f"{len(self.never_handled)} never handled, {len(self.claimed_twice)} claimed twice, "
            f"{len(self.replies_missing)} with replies missing, {len(self.replies_differ)} "
            f"with other replies, {len(self.replies_extra)} with extra replies; {confirmed} "
            f"checkouts confirmed: {self.ordered_once} ordered once, {len(self.orders_missing)} "
            f"without an order, {len(self.orders_extra)} extra orders, "
            f"{len(self.orders_differ)} not as checked out, {len(self.not_told)} not told once; "
            f"{len(self.strays)} strays. Faults: " + "; ".join(run.faults.notes)
        )


def _named(*groups: tuple[str, list[str]]) -> dict[str, list[str]]:
    return {name: items for name, items in groups if items}


def report(failures: dict[str, list[str]]) -> str:
    return "".join(f"\n{name} ({len(items)}): {items[:5]}" for name, items in failures.items())


_REPLY_KEY = re.compile(r"reply:(?P<message>[^:]+):(?P<index>\d+)")
_ORDER_KEY = re.compile(r"order:(?P<order>[^:]+):confirmed(?::staff:(?P<staff>.+))?")


def expected_replies(step: Step, numbers: list[int]) -> tuple[str, ...]:
    """The bot's replies, and the status the orders service adds (of the order confirmed
    last by then, whose number only the run knows)."""
    if step.status_of is None:
        return step.replies
    if step.status_of == 0:
        return (*step.replies, render(step.language, "status.none"))
    if len(numbers) < step.status_of:
        return (*step.replies, f"(the status of order {step.status_of}, which was never made)")
    state = render(step.language, "state.confirmed")
    number = numbers[step.status_of - 1]
    return (*step.replies, render(step.language, "status.current", number=number, state=state))


def judge(run: Run) -> Verdict:
    verdict = Verdict()
    claims = Counter(run.handled)
    planned = {m for c in run.customers for m in c.message_ids}
    verdict.strays += [f"claim {m}" for m in claims if m not in planned]
    replies_of: dict[str, dict[int, JobFate]] = defaultdict(dict)
    for key, job in run.replies.items():
        if (match := _REPLY_KEY.fullmatch(key)) is None or match["message"] not in planned:
            verdict.strays.append(key)
        else:
            replies_of[match["message"]][int(match["index"])] = job
    orders_of: dict[tuple[str, str], list[PlacedOrder]] = defaultdict(list)
    for order in run.orders:
        orders_of[(order.tenant_id, order.customer_number)].append(order)
    notices_of: dict[str, dict[str, JobFate]] = defaultdict(dict)
    for key, job in run.notices.items():
        match = _ORDER_KEY.fullmatch(key)
        notices_of[match["order"] if match else key][key] = job
    told: set[str] = set()
    for customer in run.customers:
        placed = orders_of[(customer.shop.tenant_id, customer.number)]
        numbers = sorted(order.number or 0 for order in placed if order.state != "draft")
        for step, message_id in zip(customer.steps, customer.message_ids, strict=True):
            judge_message(verdict, customer, step, message_id, claims, replies_of, numbers)
        told |= judge_orders(verdict, customer, placed, notices_of)
    verdict.strays += [
        key for order, jobs in notices_of.items() if order not in told for key in jobs
    ]
    return verdict


def judge_message(
    verdict: Verdict,
    customer: Customer,
    step: Step,
    message_id: str,
    claims: Counter[str],
    replies_of: dict[str, dict[int, JobFate]],
    numbers: list[int],
) -> None:
    where = f"{message_id} ({customer.number}: {step.text!r})"
    want = expected_replies(step, numbers)
    got = replies_of.get(message_id, {})
    if claims[message_id] == 0:
        verdict.never_handled.append(where)
    elif claims[message_id] > 1:
        verdict.claimed_twice.append(where)
    elif any(n not in got for n in range(len(want))):
        verdict.replies_missing.append(f"{where}: {len(got)} of {len(want)}")
    elif any(
        (job.body, job.recipient_number, job.sender_number)
        != (body, customer.number, customer.shop.sender)
        for body, job in zip(want, (got[n] for n in range(len(want))), strict=True)
    ):
        verdict.replies_differ.append(f"{where}: {[got[n].body for n in sorted(got)]} != {want}")
    elif len(got) > len(want):
        verdict.replies_extra.append(f"{where}: {len(got)} replies, the bot gives {len(want)}")
    else:
        verdict.answered += 1


def judge_orders(
    verdict: Verdict,
    customer: Customer,
    placed: list[PlacedOrder],
    notices_of: dict[str, dict[str, JobFate]],
) -> set[str]:
    """The customer's orders against their confirmed checkouts; the ids of those judged."""
    checkouts = [step.confirms for step in customer.steps if step.confirms is not None]
    made = sorted((o for o in placed if o.state != "draft"), key=lambda o: o.number or 0)
    verdict.orders_extra += [f"{customer.number}: {o.id} {o.state}" for o in made[len(checkouts) :]]
    carts = [o.lines for o in placed if o.state == "draft"]
    if carts != ([customer.cart] if customer.cart else []):
        verdict.orders_differ.append(f"{customer.number}'s cart: {carts}, not {customer.cart}")
    staff = sorted(customer.shop.tenant.bot.staff_numbers)
    for index, checkout in enumerate(checkouts):
        where = f"{customer.number}'s checkout #{index + 1}"
        if index >= len(made):
            verdict.orders_missing.append(where)
            continue
        order = made[index]
        lines = lines_of(checkout.lines)
        if (order.state, order.lines, order.method, order.address, order.total_minor) != (
            "confirmed",
            lines,
            checkout.method,
            checkout.address,
            checkout.total_minor,
        ):
            verdict.orders_differ.append(f"{where}: {order}")
            continue
        want = {f"order:{order.id}:confirmed": customer.number} | {
            f"order:{order.id}:confirmed:staff:{number}": number for number in staff
        }
        jobs = notices_of.get(order.id, {})
        got = {key: job.recipient_number for key, job in jobs.items()}
        if got != want or f"#{order.number}" not in jobs[f"order:{order.id}:confirmed"].body:
            verdict.not_told.append(f"{where} (#{order.number}): {sorted(got)}")
            continue
        verdict.ordered_once += 1
    return {order.id for order in placed}


# -- the tests


def test_every_message_is_handled_once_and_answered_as_the_bot_would(run: Run) -> None:
    verdict = judge(run)
    summary = verdict.summary(run)
    print(summary)
    failures = verdict.message_failures()
    assert not run.stalled, f"The customers stopped: {run.stalled}. {summary}{report(failures)}"
    assert not failures, summary + report(failures)
    assert verdict.answered == run.messages, summary


def test_each_confirmed_checkout_is_one_order_told_once(run: Run) -> None:
    verdict = judge(run)
    failures = verdict.order_failures()
    assert not failures, verdict.summary(run) + report(failures)
    assert verdict.ordered_once == sum(
        step.confirms is not None for c in run.customers for step in c.steps
    )


def test_nothing_is_left_in_the_outbox_pending_or_dead_lettered(run: Run) -> None:
    left = {
        "outbox calls": run.outbox_left,
        "pending entries": sum(run.pending.values()),
        "dead-lettered entries": run.dead_letters,
    }
    assert not any(left.values()), (
        f"left after {SETTLE_S:.0f} s: {left}; by consumer: {run.pending}"
    )


def test_the_faults_cut_into_work_in_progress(run: Run) -> None:
    notes = "; ".join(run.faults.notes)
    assert len(run.faults.notes) == 3, f"not every fault came: {notes} {run.stalled}"
    assert run.faults.frozen_holding > 0, notes
    assert run.faults.taken_from_frozen > 0, notes
    assert run.faults.killed_holding > 0, notes
    assert run.faults.outbox_peak > 0, notes
