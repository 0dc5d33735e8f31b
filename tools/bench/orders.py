"""Inbound events one orders replica handles per second (event in → reply enqueued), with
1,000 tenants and 10,000 customers mid-conversation.

    .venv/bin/python -m tools.bench.orders [--tenants 1000] [--customers 10000]
        [--events 20000] [--rounds 3] [--paced-events 3000] [--paced-fraction 0.25]
        [--concurrency 8] [--profile flame.svg | stacks.txt] [--no-durable] [--keep DIR]

PostgreSQL and Redis come from the project's harness (``LocalInfra``); ``wamesh serve``
tenants, workers (where the dispatcher registers each sender's session, once), an intake-only
dispatcher (``WAMESH_SEND=false``: it takes the jobs and sends nothing) and ONE orders
replica run each as its own process, their logs in the data folder. No conversation store:
the bench writes ``InboundMessageEvent``s straight onto the ``inbound`` stream, as the
store's relay would; orders calls the store only for STOP and START, which the load avoids
(its target is a port nothing listens on).

- set-up: ``--tenants`` shops through the tenants API (a menu of 10 items, a sender number
  each) and ``--customers`` customers spread over them;
- warm-up: every customer greets, then puts an item in the cart (two events each; reported
  as well: these are turns of new customers);
- ``--rounds`` rounds, each a flood (``--events`` mid-conversation messages of random
  customers: an item by number or by name, ``2 x 3``, ``cart``, ``remove 1``, ``status``,
  ``menu``; published at once, the rate is events over first publish → last reply recorded)
  and then a paced run (``--paced-events`` at ``--paced-fraction`` of the first flood's rate,
  so that the latency is the turn's own: a flood's latency is mostly its backlog).

An event's latency runs from its XADD to its first reply's ``created_at`` in the dispatcher's
jobs table (the dispatcher's wall clock, stamped as it takes the batch; one machine, one
clock). Beside it, from the services' own metrics: the replica's mean turn (read → replies
handed on and crossed off its outbox: a replica handles up to ``--concurrency`` customers'
events at once, so the rate is at most concurrency / turn), the dispatcher's EnqueueBatch and
the GetTenant calls per event (the tenant caches of orders and the dispatcher). CPU
milliseconds per event of each process say where a rate is spent; ``others`` is the rest of
the machine (it is shared: compare rounds, not single figures). With ``--profile`` one more
flood (6,000 events at most) runs with py-spy attached to the orders replica (not counted in
the spreads), and where its CPU went is printed. The table goes to stdout, then one JSON
line; progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import html
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import grpc
import httpx
import psutil  # type: ignore[import-untyped]
import redis.asyncio as aioredis
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client.parser import text_string_to_metric_families

from tools.faults.mesh import ProcessMesh, Service
from wamesh.common.v1 import money_pb2
from wamesh.conversations.v1 import conversations_pb2
from wamesh.events.v1 import events_pb2
from wamesh.tenants.v1 import tenants_pb2, tenants_pb2_grpc
from wamesh_kit.keys import dead_letter_stream
from wamesh_kit.localinfra import free_port
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.redis_client import as_text
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN
from wamesh_kit.streams import encode_entry
from wamesh_orders.turns import GROUP
from wamesh_orders.turns import INBOUND_STREAM as INBOUND

SERVICES = ("tenants", "workers", "dispatcher", "orders")
ACCOUNT_SID = "AC" + "0" * 32
MENU = (
    "Margherita",
    "Paella Valenciana",
    "Crème Brûlée",
    "Pad Thai",
    "Falafel Wrap",
    "Chicken Biryani",
    "Caesar Salad",
    "Tiramisu",
    "Buff Momo",
    "Mint Lemonade",
)
# What a customer mid-conversation writes, and how often (weights).
MIX = (
    ("{number}", 20),
    ("2 x {number}", 20),
    ("{name}", 5),
    ("cart", 15),
    ("remove 1", 10),
    ("status", 10),
    ("menu", 20),
)
PUBLISH_CHUNK = 200
# Enough for a profile of a few thousand samples at py-spy's 100 a second.
PROFILED_EVENTS = 6_000
POLL_S = 0.1


@dataclass(frozen=True)
class Shop:
    tenant_id: str
    sender: str


@dataclass(frozen=True)
class Customer:
    number: str
    shop: Shop
    conversation_id: str


# -- the mesh


@dataclass
class OrdersMesh(ProcessMesh):
    """``with OrdersMesh(folder) as mesh:`` PostgreSQL, Redis and the four services, running."""

    durable: bool = True
    concurrency: int = 8
    metrics_ports: dict[str, int] = field(init=False, default_factory=dict)

    def _start(self) -> None:
        histories = {history.name: history for history in service_histories()}
        for name in SERVICES:
            upgrade_database(self.dsn(name), histories[name])
        self.ports = {name: free_port() for name in SERVICES}
        self.metrics_ports = {name: free_port() for name in SERVICES}
        for name, env in self._environments().items():
            self.add(Service(name, env, self.log(name)))

    def _environments(self) -> dict[str, dict[str, str]]:
        nowhere = f"127.0.0.1:{free_port()}"  # conversations: never called by this load
        extra: dict[str, dict[str, str]] = {
            "tenants": {
                "WAMESH_CREDENTIAL_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
                "WAMESH_CREDENTIAL_ACTIVE_KEY": "k1",
            },
            "workers": {},
            "dispatcher": {
                "WAMESH_SEND": "false",
                "WAMESH_TENANTS_TARGET": self.target("tenants"),
                "WAMESH_WORKERS_TARGET": self.target("workers"),
                "WAMESH_CONVERSATIONS_TARGET": nowhere,
            },
            "orders": {
                "WAMESH_INSTANCE_ID": "orders-bench",
                "WAMESH_INBOUND_CONCURRENCY": str(self.concurrency),
                "WAMESH_TENANTS_TARGET": self.target("tenants"),
                "WAMESH_DISPATCHER_TARGET": self.target("dispatcher"),
                "WAMESH_CONVERSATIONS_TARGET": nowhere,
            },
        }
        return {
            name: {
                "WAMESH_GRPC_LISTEN": self.target(name),
                "WAMESH_METRICS_LISTEN": f"127.0.0.1:{self.metrics_ports[name]}",
                "WAMESH_DATABASE_URL": self.dsn(name),
                "WAMESH_REDIS_URL": self.infra.redis.url,
                "WAMESH_LOG_LEVEL": "WARNING",
                "WAMESH_LOG_FORMAT": "json",
                "WAMESH_SHUTDOWN_GRACE_S": "1",
                **extra[name],
            }
            for name in SERVICES
        }

    async def until_ready(self, timeout_s: float = 60) -> None:
        for name in SERVICES:
            async with make_channel(self.target(name)) as channel:
                ready = asyncio.create_task(channel.channel_ready())
                deadline = time.monotonic() + timeout_s
                while not ready.done():
                    self.check_alive()
                    if time.monotonic() > deadline:
                        ready.cancel()
                        raise RuntimeError(f"{name} did not start: see {self.log(name)}")
                    await asyncio.wait([ready], timeout=0.2)

    def dsn(self, name: str) -> str:
        return self.infra.postgres.dsn(name)

    def roots(self) -> dict[str, int]:
        """Process → pid of the process tree its CPU is counted over."""
        roots = {name: service.pid for name, service in self.services.items()}
        roots["postgres"] = self.postgres_pid()
        port = str(self.infra.redis.port)
        for process in psutil.process_iter(["name", "cmdline"]):
            # Redis rewrites its command line to "redis-server 127.0.0.1:<port>".
            cmdline = " ".join(process.info["cmdline"] or [])
            if process.info["name"] == "redis-server" and f":{port}" in cmdline:
                roots["redis"] = process.pid
        return roots


# -- tenants, customers and their messages


def menu_item(index: int, name: str) -> tenants_pb2.MenuItem:
    units, cents = divmod(450 + 125 * index, 100)
    price = money_pb2.Money(currency_code="EUR", units=units, nanos=cents * 10_000_000)
    return tenants_pb2.MenuItem(id=f"item-{index}", name=name, price=price, available=True)


BOT = tenants_pb2.BotSettings(
    menu=[menu_item(index, name) for index, name in enumerate(MENU)],
    greeting="Welcome! Here is our menu.",
    promo_text="Thanks! 10% off with code BENCH10",
    apology_text="We are sorry it was not perfect.",
)


async def create_shops(mesh: OrdersMesh, count: int, in_flight: int = 16) -> list[Shop]:
    """``count`` tenants with the menu and a sender number each, through the tenants API."""
    gate = asyncio.Semaphore(in_flight)
    async with make_channel(mesh.target("tenants"), token=DEV_ADMIN_TOKEN) as channel:
        admin: Any = tenants_pb2_grpc.TenantRegistryStub(channel)

        async def create(index: int) -> Shop:
            shop = Shop(f"bench-{index:05d}", f"+1555{index:07d}")
            async with gate:
                await admin.CreateTenant(
                    tenants_pb2.CreateTenantRequest(
                        request_id=shop.tenant_id,
                        tenant_id=shop.tenant_id,
                        display_name=f"Shop {index}",
                        default_language="en",
                        support_contact="support@shop.example",
                        bot=BOT,
                    )
                )
                await admin.AddSenderNumber(
                    tenants_pb2.AddSenderNumberRequest(tenant_id=shop.tenant_id, number=shop.sender)
                )
            return shop

        return list(await asyncio.gather(*(create(index) for index in range(count))))


def customers(shops: Sequence[Shop], count: int) -> list[Customer]:
    return [
        Customer(f"+4915{index:09d}", shops[index % len(shops)], f"bench-conv-{index:07d}")
        for index in range(count)
    ]


def inbound(message_id: str, customer: Customer, body: str) -> events_pb2.InboundMessageEvent:
    """The event the conversation store publishes for a customer's text message."""
    now = Timestamp()
    now.GetCurrentTime()
    return events_pb2.InboundMessageEvent(
        tenant_id=customer.shop.tenant_id,
        conversation_id=customer.conversation_id,
        message_id=message_id,
        customer_number=customer.number,
        sender_number=customer.shop.sender,
        content=conversations_pb2.InboundMessage(
            message_sid="SM" + message_id.replace("-", "").rjust(32, "0"),
            account_sid=ACCOUNT_SID,
            from_address=f"whatsapp:{customer.number}",
            to_address=f"whatsapp:{customer.shop.sender}",
            body=body,
            profile_name="Ana",
            wa_id=customer.number.removeprefix("+"),
            message_type="text",
        ),
        received_at=now,
        recorded_at=now,
    )


def warm_up(people: Sequence[Customer], rng: random.Random) -> list[events_pb2.InboundMessageEvent]:
    """Every customer greets, then puts an item in the cart (the stream keeps their order)."""
    greetings = [inbound(f"w{i:07d}", c, "hi") for i, c in enumerate(people)]
    carts = [
        inbound(f"w{len(people) + i:07d}", c, f"{rng.randint(1, 3)} x {rng.randint(1, len(MENU))}")
        for i, c in enumerate(people)
    ]
    return greetings + carts


def mid_conversation(
    tag: str, people: Sequence[Customer], count: int, rng: random.Random
) -> list[events_pb2.InboundMessageEvent]:
    texts, weights = zip(*MIX, strict=True)
    bodies = rng.choices(texts, weights, k=count)
    return [
        inbound(
            f"{tag}{index:07d}",
            rng.choice(people),
            body.format(number=rng.randint(1, len(MENU)), name=rng.choice(MENU).lower()),
        )
        for index, body in enumerate(bodies)
    ]


# -- one phase: publish, wait until handled, read the replies


@dataclass
class Published:
    at: dict[str, float]  # message id → wall time of its XADD
    last_entry: str
    seconds: float
    behind_s: float = 0.0  # paced: how far the publisher ever fell behind its schedule


async def publish(
    redis: aioredis.Redis, events: Sequence[events_pb2.InboundMessageEvent], rate: float | None
) -> Published:
    """XADDs ``events`` in pipelines: all at once, or at ``rate`` a second."""
    at: dict[str, float] = {}
    last = ""
    behind = 0.0
    started = time.time()
    sent = 0
    while sent < len(events):
        now = time.time()
        if rate is None:
            upto = min(len(events), sent + PUBLISH_CHUNK)
        else:
            upto = min(len(events), int((now - started) * rate) + 1)
            behind = max(behind, now - (started + sent / rate))
        async with redis.pipeline(transaction=False) as pipe:
            for event in events[sent:upto]:
                pipe.xadd(INBOUND, encode_entry(event))  # type: ignore[arg-type]
                at[event.message_id] = now
            ids = await pipe.execute()
        last, sent = as_text(ids[-1]), upto
        if rate is not None and sent < len(events):
            await asyncio.sleep(max(0.0, started + sent / rate - time.time()))
    return Published(at, last, time.time() - started, behind)


async def until_handled(
    redis: aioredis.Redis, last_entry: str, stall_s: float, check: Callable[[], None]
) -> None:
    """Until the orders group has read up to ``last_entry`` and acknowledged everything (it
    acknowledges an entry once its replies are with the dispatcher)."""
    progress, moved = None, time.monotonic()
    while True:
        check()
        groups: Any = await redis.xinfo_groups(INBOUND)
        group = next((g for g in groups if as_text(g["name"]) == GROUP), None)
        if group is not None:
            state = (as_text(group["last-delivered-id"]), int(group["pending"]))
            if state == (last_entry, 0):
                return
            if state != progress:
                progress, moved = state, time.monotonic()
        if time.monotonic() - moved > stall_s:
            raise TimeoutError(f"no progress for {stall_s:.0f} s: group at {progress}")
        await asyncio.sleep(POLL_S)


async def fetch(dsn: str, query: str, *args: Any) -> list[Any]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(query, *args))
    finally:
        await connection.close()


async def until_outbox_empty(dsn: str, timeout_s: float) -> None:
    """Replies a failed call left in the orders outbox are made by its loop, within a second."""
    deadline = time.monotonic() + timeout_s
    while (await fetch(dsn, "SELECT count(*) FROM outbox"))[0][0]:
        if time.monotonic() > deadline:
            raise TimeoutError("the orders outbox did not empty")
        await asyncio.sleep(0.2)


async def last_job_seq(dsn: str) -> int:
    return int((await fetch(dsn, "SELECT coalesce(max(seq), 0) FROM jobs"))[0][0])


async def replies(dsn: str, after_seq: int) -> tuple[dict[str, float], int]:
    """Message id → when its first reply was recorded; and how many replies there were."""
    rows = await fetch(
        dsn,
        "SELECT idempotency_key, created_at FROM jobs "
        "WHERE seq > $1 AND idempotency_key LIKE 'reply:%'",
        after_seq,
    )
    first: dict[str, float] = {}
    for key, created_at in rows:
        message_id, at = key.split(":")[1], created_at.timestamp()
        first[message_id] = min(at, first.get(message_id, at))
    return first, len(rows)


class Cpu:
    """CPU seconds of each process tree of the mesh, of this process, and of the machine."""

    def __init__(self, roots: dict[str, int]) -> None:
        self._roots = roots

    def snapshot(self) -> dict[str, float]:
        seconds = {name: _tree_cpu(pid) for name, pid in self._roots.items()}
        seconds["bench"] = _tree_cpu(os.getpid(), children=False)
        busy = psutil.cpu_times()
        seconds["machine"] = sum(busy) - busy.idle - getattr(busy, "iowait", 0.0)
        return seconds


def _tree_cpu(pid: int, *, children: bool = True) -> float:
    total = 0.0
    with suppress(psutil.Error):
        root = psutil.Process(pid)
        for process in [root, *(root.children(recursive=True) if children else [])]:
            with suppress(psutil.Error):  # exited in between
                times = process.cpu_times()
                total += times.user + times.system
    return total


Metrics = dict[tuple[str, str, str], float]  # (service, sample, grpc method) → value
HANDLING = "wamesh_grpc_server_handling_seconds"


async def scrape(mesh: OrdersMesh) -> Metrics:
    """Every service's Prometheus samples, summed over labels but the gRPC method."""
    found: Metrics = defaultdict(float)
    async with httpx.AsyncClient(timeout=10) as http:
        for name, port in mesh.metrics_ports.items():
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    found[(name, sample.name, sample.labels.get("grpc_method", ""))] += sample.value
    return found


def timings(before: Metrics, after: Metrics, events: int) -> dict[str, float | None]:
    """Where a turn's wall time goes, from the services' own histograms: the orders replica's
    turn (read → replies handed to the dispatcher), and the calls it waits on inside it."""

    def change(service: str, sample: str, method: str = "") -> float:
        key = (service, sample, method)
        return after.get(key, 0.0) - before.get(key, 0.0)

    def mean_ms(service: str, histogram: str, method: str = "") -> float | None:
        count = change(service, f"{histogram}_count", method)
        return (
            round(1000 * change(service, f"{histogram}_sum", method) / count, 2) if count else None
        )

    return {
        "turn_ms": mean_ms("orders", "wamesh_orders_turn_seconds"),
        "enqueue_batch_ms": mean_ms("dispatcher", HANDLING, "EnqueueBatch"),
        "get_tenant_ms": mean_ms("tenants", HANDLING, "GetTenant"),
        "get_tenant_per_event": round(
            change("tenants", f"{HANDLING}_count", "GetTenant") / events, 3
        ),
    }


def quantile_ms(values: Sequence[float], q: int) -> float:
    if len(values) < 2:
        return round(1000 * (values[0] if values else 0.0), 1)
    return round(1000 * statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


async def run_phase(
    mesh: OrdersMesh,
    redis: aioredis.Redis,
    name: str,
    events: Sequence[events_pb2.InboundMessageEvent],
    *,
    stall_s: float,
    rate: float | None = None,
    during: Callable[[], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    dispatcher, cpu = mesh.dsn("dispatcher"), Cpu(mesh.roots())
    after_seq = await last_job_seq(dispatcher)
    dead_before = int(await redis.xlen(dead_letter_stream(INBOUND)))
    metrics = await scrape(mesh)
    before, wall = cpu.snapshot(), time.monotonic()
    published = await publish(redis, events, rate)
    await until_handled(redis, published.last_entry, stall_s, mesh.check_alive)
    after, wall = cpu.snapshot(), time.monotonic() - wall
    waits = timings(metrics, await scrape(mesh), len(events))
    if during is not None:
        await during()
    await until_outbox_empty(mesh.dsn("orders"), stall_s)
    answered, reply_count = await replies(dispatcher, after_seq)
    latencies = [answered[m] - at for m, at in published.at.items() if m in answered]
    span = max(answered.values()) - min(published.at.values())
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    ours = sum(v for k, v in used.items() if k != "machine")
    used["others"] = max(0.0, used.pop("machine") - ours)
    return {
        "phase": name,
        "events": len(events),
        "offered_per_s": round(rate, 1) if rate else None,
        "answered": len(latencies),
        "replies": reply_count,
        "dead_lettered": int(await redis.xlen(dead_letter_stream(INBOUND))) - dead_before,
        "seconds": round(span, 2),
        "per_s": round(len(latencies) / span, 1),
        "publish_s": round(published.seconds, 2),
        "publisher_behind_ms": round(published.behind_s * 1000, 1),
        "p50_ms": quantile_ms(latencies, 50),
        "p90_ms": quantile_ms(latencies, 90),
        "p99_ms": quantile_ms(latencies, 99),
        "max_ms": round(1000 * max(latencies), 1),
        "orders_cores": round(used["orders"] / wall, 2),
        **waits,
        "cpu_ms_per_event": {k: round(1000 * v / len(events), 2) for k, v in sorted(used.items())},
    }


# -- the profile


def spy(pid: int, path: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` into ``path`` (collapsed stacks for .txt, else a flame graph)
    until it is sent SIGINT."""
    py_spy = str(Path(sys.executable).parent / "py-spy")
    output = "raw" if path.suffix == ".txt" else "flamegraph"
    command = [py_spy, "record", "-p", str(pid), "-r", "100", "-f", output, "-o", str(path)]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sys.stderr)


Stacks = dict[tuple[str, ...], int]

_SVG_FRAME = re.compile(
    r'<title>(.*?) \([\d,]+ samples?, [\d.]+%\)</title><rect [^>]*?y="([\d.]+)"'
    r'[^>]*?fg:x="(\d+)" fg:w="(\d+)"'
)


def read_stacks(path: Path) -> Stacks:
    text = path.read_text()
    if path.suffix == ".txt":
        stacks: Stacks = Counter()
        for line in text.splitlines():
            frames, _, count = line.rpartition(" ")
            stacks[tuple(frames.split(";"))] += int(count)
        return stacks
    return _svg_stacks(text)


def _svg_stacks(text: str) -> Stacks:
    """The collapsed stacks back out of py-spy's flame graph: a frame's parent is the frame
    one row nearer the root whose span holds it."""
    nodes = [
        (float(y), int(x), int(w), html.unescape(n)) for n, y, x, w in _SVG_FRAME.findall(text)
    ]
    root_y = next(y for y, _, _, name in nodes if name == "all")
    rows = sorted({abs(y - root_y) for y, *_ in nodes})
    by_depth: dict[int, list[tuple[int, int, tuple[str, ...]]]] = defaultdict(list)
    children: Counter[tuple[int, int]] = Counter()
    for y, x, w, name in sorted(nodes, key=lambda node: abs(node[0] - root_y)):
        depth = rows.index(abs(y - root_y))
        path: tuple[str, ...] = ()
        if depth:
            above = by_depth[depth - 1]
            px, _, path = above[bisect.bisect_right(above, (x, sys.maxsize)) - 1]
            children[(depth - 1, px)] += w
            path = (*path, name)
        bisect.insort(by_depth[depth], (x, w, path))
    stacks: Stacks = Counter()
    for depth, row in by_depth.items():
        for x, w, path in row:
            if path and w > children[(depth, x)]:
                stacks[path] += w - children[(depth, x)]
    return stacks


# Waits py-spy may sample as active on a busy machine (a runnable thread back from a poll),
# and the metrics server's: not work of the replica's.
IDLE = ".select (selectors.py)"
# Frames under every sample of the main thread: no news in a breakdown.
ENTRY_POINTS = ("<module> ", "main ", "serve ", "run_grpc_service ")
_PREFIX = re.compile(r"^.*?(?:site-packages|python3\.\d+|services/[^/]+|libs/[^/]+)/")
_FRAME = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")


def _function(frame: str) -> tuple[str, str]:
    """(``function (module file)``, package) of a py-spy frame ``name (path:line)``."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, frame
    name, path = match.groups()
    short = _PREFIX.sub("", path)
    return f"{name} ({short})", short.split("/")[0].removesuffix(".py")


def hotspots(stacks: Stacks, top: int = 15) -> dict[str, Any]:
    """Where the orders replica's CPU went: functions and packages by own time, packages by
    time in them and below, and the service's own functions so (a turn's breakdown). SQLAlchemy
    runs statements in greenlets, which py-spy samples as stacks of their own (rooted at its
    ``Connection.execute``): the service's functions' shares leave those out."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    below: Counter[str] = Counter()
    within: Counter[str] = Counter()
    for frames, count in stacks.items():
        functions = [_function(frame) for frame in frames if frame]
        if not functions or functions[-1][0].endswith(IDLE):
            continue
        own[functions[-1][0]] += count
        packages[functions[-1][1]] += count
        below.update(dict.fromkeys({package for _, package in functions}, count))
        for name, package in set(functions):
            if package.startswith("wamesh") and not name.startswith(ENTRY_POINTS):
                within[name] += count

    total = sum(own.values()) or 1

    def share(counter: Counter[str], n: int) -> dict[str, float]:
        return {name: round(100 * count / total, 1) for name, count in counter.most_common(n)}

    return {
        "samples": total,
        "own_pct": share(own, top),
        "own_by_package_pct": share(packages, top),
        "inclusive_by_package_pct": share(below, top),
        "wamesh_inclusive_pct": share(within, 2 * top),
    }


# -- the run


def spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": round(statistics.median(values), 1),
        "max": max(values),
        "spread_pct": round(100 * (max(values) - min(values)) / statistics.median(values), 1),
    }


@dataclass
class Bench:
    """The phases of one run, over one mesh and one set of customers."""

    mesh: OrdersMesh
    redis: aioredis.Redis
    people: list[Customer]
    args: argparse.Namespace
    rng: random.Random

    async def phase(
        self, name: str, events: Sequence[events_pb2.InboundMessageEvent], **options: Any
    ) -> dict[str, Any]:
        result = await run_phase(
            self.mesh, self.redis, name, events, stall_s=self.args.stall, **options
        )
        note(f"{name}: {result['per_s']}/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
        return result

    def load(self, tag: str, count: int) -> list[events_pb2.InboundMessageEvent]:
        return mid_conversation(tag, self.people, count, self.rng)

    async def rounds(self) -> list[dict[str, Any]]:
        """Each round a flood, then a paced run at a fixed share of the first flood's rate."""
        phases, rate = [], None
        for round_ in range(1, self.args.rounds + 1):
            flood = await self.phase(f"flood {round_}", self.load(f"f{round_}-", self.args.events))
            phases.append(flood)
            rate = rate or self.args.paced_fraction * flood["per_s"]
            if self.args.paced_events:
                paced = self.load(f"p{round_}-", self.args.paced_events)
                phases.append(await self.phase(f"paced {round_}", paced, rate=rate))
        return phases

    async def profiled(self, path: Path) -> dict[str, Any]:
        """One more flood (of PROFILED_EVENTS at most) with py-spy attached to the orders
        replica; where its CPU went."""
        recorder = spy(self.mesh.services["orders"].pid, path)
        await asyncio.sleep(1.0)  # attached before the first event

        async def stop() -> None:
            recorder.send_signal(signal.SIGINT)
            await asyncio.to_thread(recorder.wait, 60)

        try:
            events = self.load("x-", min(self.args.events, PROFILED_EVENTS))
            run = await self.phase("flood, py-spy", events, during=stop)
        finally:
            if recorder.poll() is None:
                recorder.kill()
        stacks = await asyncio.to_thread(read_stacks, path)
        return {"file": str(path), "run": run, **hotspots(stacks)}


async def measure(mesh: OrdersMesh, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    await mesh.until_ready()
    started = time.monotonic()
    shops = await create_shops(mesh, args.tenants)
    people = customers(shops, args.customers)
    figures: dict[str, Any] = {"setup_s": round(time.monotonic() - started, 1)}
    note(f"{len(shops)} tenants in {figures['setup_s']} s; warming up {len(people)} customers")
    redis = aioredis.Redis.from_url(mesh.infra.redis.url)
    try:
        bench = Bench(mesh, redis, people, args, rng)
        phases = [await bench.phase("warm-up", warm_up(people, rng))]
        phases += await bench.rounds()
        if args.profile:
            figures["profile"] = await bench.profiled(args.profile)
    finally:
        await redis.aclose()
    figures["phases"] = phases
    summary = {}
    for kind, keys in (("flood", ("per_s",)), ("paced", ("per_s", "p50_ms", "p99_ms"))):
        runs = [phase for phase in phases if phase["phase"].startswith(kind)]
        if runs:
            summary[kind] = {key: spread([run[key] for run in runs]) for key in keys}
    figures["summary"] = summary
    return figures


def note(text: str) -> None:
    print(f"[bench orders] {text}", file=sys.stderr, flush=True)


# Figure → column heading: the rate, the latency, the turn's wall time and what it waits on.
COLUMNS = {
    "phase": "phase",
    "events": "events",
    "per_s": "per_s",
    "p50_ms": "p50_ms",
    "p99_ms": "p99_ms",
    "turn_ms": "turn_ms",
    "enqueue_batch_ms": "enqueue_ms",
    "get_tenant_per_event": "get_tenant/ev",
    "orders_cores": "orders_cores",
}
CPU_COLUMNS = ("orders", "dispatcher", "postgres", "tenants", "redis", "bench", "others")


def table(figures: dict[str, Any]) -> str:
    rows = [[*COLUMNS.values(), "| cpu ms/event:", *CPU_COLUMNS]]
    for phase in figures["phases"]:
        cpu = [str(phase["cpu_ms_per_event"].get(name, "")) for name in CPU_COLUMNS]
        rows.append([*(str(phase[key]) for key in COLUMNS), "|", *cpu])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    for kind, figures_of_kind in figures["summary"].items():
        lines.append(f"{kind} spread: {json.dumps(figures_of_kind)}")
    profile = figures.get("profile")
    if profile:
        lines.append(f"py-spy ({profile['samples']} samples, {profile['file']}), own time %:")
        lines += [f"  {pct:5.1f}  {name}" for name, pct in profile["own_pct"].items()]
        lines.append("  by package: " + json.dumps(profile["own_by_package_pct"]))
        lines.append("packages, time in them and below, %:")
        lines.append("  " + json.dumps(profile["inclusive_by_package_pct"]))
        lines.append("wamesh functions, time in them and below, %:")
        lines += [f"  {pct:5.1f}  {name}" for name, pct in profile["wamesh_inclusive_pct"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=20_000, help="events per flood")
    parser.add_argument("--rounds", type=int, default=3, help="floods")
    parser.add_argument("--paced-events", type=int, default=3_000, help="0: no paced phase")
    parser.add_argument("--paced-fraction", type=float, default=0.25, help="of the 1st flood rate")
    parser.add_argument("--profile", type=Path, help="one more flood under py-spy: .svg, .txt")
    parser.add_argument("--durable", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--stall", type=float, default=120.0, help="seconds without progress")
    parser.add_argument("--concurrency", type=int, default=8, help="WAMESH_INBOUND_CONCURRENCY")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep data and service logs here")
    args = parser.parse_args()
    if args.customers < args.tenants:
        parser.error("--customers must be at least --tenants")
    if args.profile:
        args.profile = args.profile.resolve()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="wamesh-bench-orders-"))
    load_before = os.getloadavg()
    try:
        with OrdersMesh(folder, durable=args.durable, concurrency=args.concurrency) as mesh:
            figures = asyncio.run(measure(mesh, args))
    except BaseException:
        note(f"failed; data and logs kept in {folder}")
        raise
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    figures["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    figures["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": [round(load, 2) for load in load_before],
        "load_after": [round(load, 2) for load in os.getloadavg()],
        "python": sys.version.split()[0],
        "grpc": grpc.__version__,
    }
    print(table(figures))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
