"""RecordInbound throughput, and ListMessages latency through a 100,000-message conversation.

    .venv/bin/python tools/bench/conversations.py [--messages 20000] [--clients 8]
        [--client-processes 1,2] [--deep 100000] [--profile flame.svg]

Starts real PostgreSQL and Redis (the project's harness), copies one conversation of
``--deep`` messages straight into the database, runs ``wamesh serve conversations`` (outbox
relay included) as its own process, and calls it from this one over a real socket:

- record: ``--messages`` new inbound messages over 1,000 tenants and 50,000 customers from
  ``--clients`` callers, each awaiting its calls in turn; once per ``--client-processes``
  entry, the callers split over that many processes. CPU seconds of the clients, the service
  and Postgres stand beside the figures, to tell which one is the bottleneck;
- list: the conversation walked whole, 50 messages a page, then its first, middle and last
  pages fetched again in turn (keyset paging should keep them equal).

A benchmark, not a test: it prints figures and asserts only that answers are right.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import psutil  # type: ignore[import-untyped]
from benchkit import serve

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh_conversations.store import conversation_id_for, timestamp
from wamesh_conversations.validation import Participants
from wamesh_kit.localinfra import LocalInfra, free_port
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN

TENANTS, CUSTOMERS, WARMUP, PAGE_SIZE = 1_000, 50_000, 200, 50
DEEP_TENANT = "bench-deep"
DEEP = Participants(sender_number="+14449999999", customer_number="+15559999999")
Share = tuple[list[pb.RecordInboundRequest], list[pb.RecordInboundRequest], int]
INBOUND = pb.InboundMessage(
    account_sid="AC" + "0" * 32, body="hola", profile_name="Ana", message_type="text"
)


def inbound_requests(count: int) -> list[pb.RecordInboundRequest]:
    requests = []
    for _ in range(count):
        customer = random.randrange(CUSTOMERS)
        tenant = customer % TENANTS  # each customer writes to one tenant's number
        request = pb.RecordInboundRequest(tenant_id=f"bench-{tenant:05d}", message=INBOUND)
        request.message.message_sid = "SM" + uuid.uuid4().hex
        request.message.from_address = f"whatsapp:+1555{customer:07d}"
        request.message.to_address = f"whatsapp:+1444{tenant:07d}"
        request.message.wa_id = f"1555{customer:07d}"
        requests.append(request)
    return requests


async def seed(dsn: str, count: int) -> tuple[str, int]:
    """One conversation of ``count`` inbound messages a second apart (every column, in table
    order); its id, and the pid of the postmaster."""
    conversation_id = conversation_id_for(DEEP_TENANT, DEEP)
    first = datetime.now(UTC) - timedelta(seconds=count)
    last = first + timedelta(seconds=count - 1)
    details = pb.InboundDetails(  # what RecordInbound stores for INBOUND
        account_sid=INBOUND.account_sid,
        profile_name="Ana",
        wa_id="15559999999",
        message_type="text",
    )
    content = pb.Message(inbound=details).SerializeToString()
    change = pb.StatusChange(status=pb.MESSAGE_STATUS_RECEIVED, occurred_at=timestamp(first))
    history = pb.Message(status_history=[change]).SerializeToString()
    keys = (DEEP_TENANT, conversation_id, pb.DIRECTION_INBOUND, pb.MESSAGE_STATUS_RECEIVED)
    rest = (None, 0, "", history)  # idempotency_key, error_code, error_message, status_history
    conversation = (conversation_id, DEEP_TENANT, DEEP.sender_number, DEEP.customer_number)
    connection = await asyncpg.connect(dsn)
    try:
        window = last + timedelta(hours=24)
        await connection.copy_records_to_table(
            "conversations",
            records=[(*conversation, "Ana", last, last, window, count, None, first, None)],
        )
        records = [  # "SM" + uuid4 hex (RecordInbound's SIDs) never looks like these SIDs
            (str(uuid.uuid4()), *keys, f"hola {i}", content, f"SM{i:032x}", *rest, at, at)
            for i, at in ((i, first + timedelta(seconds=i)) for i in range(count))
        ]
        await connection.copy_records_to_table("messages", records=records)
        await connection.execute("ANALYZE")
        backend = psutil.Process(await connection.fetchval("SELECT pg_backend_pid()"))
        return conversation_id, backend.parent().pid
    finally:
        await connection.close()


def cpu_seconds(root: int) -> dict[int, float]:
    """CPU seconds so far of a process and of its descendants, by pid."""
    seconds = {}
    for process in [psutil.Process(root), *psutil.Process(root).children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # exited in between
            seconds[process.pid] = sum(process.cpu_times()[:2])  # user + system
    return seconds


def summary(latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": round(cuts[49] * 1000, 2), "p99_ms": round(cuts[98] * 1000, 2)}


async def drive(
    port: int, warmup: list[Any], requests: list[Any], clients: int, on_start: Callable[[], Any]
) -> dict[str, Any]:
    """Warm up, call ``on_start``, then send ``requests`` from ``clients`` callers."""
    async with make_channel(f"127.0.0.1:{port}", token=DEV_INTERNAL_TOKEN) as channel:
        stub = conversations_pb2_grpc.ConversationStoreStub(channel)
        await asyncio.wait_for(channel.channel_ready(), 60)

        async def caller(queue: Iterator[pb.RecordInboundRequest], sink: list[float]) -> None:
            for request in queue:
                started = time.perf_counter()
                response = await stub.RecordInbound(request)
                sink.append(time.perf_counter() - started)
                if (
                    response.duplicate
                    or response.message.provider_sid != request.message.message_sid
                ):
                    raise AssertionError(f"{request.message.message_sid}: {response}")

        warm, queue, latencies = iter(warmup), iter(requests), list[float]()
        await asyncio.gather(*(caller(warm, []) for _ in range(clients)))
        on_start()
        cpu, started = time.process_time(), time.monotonic()  # monotonic: one clock for all
        await asyncio.gather(*(caller(queue, latencies) for _ in range(clients)))
        end = time.monotonic()
    return {"latencies": latencies, "start": started, "end": end, "cpu": time.process_time() - cpu}


def client_process(port: int, share: Share, barrier: Barrier, results: Queue[Any]) -> None:
    results.put(asyncio.run(drive(port, *share, barrier.wait)))


def record_phase(port: int, pids: dict[str, int], n: int, messages: int, clients: int) -> Any:
    """RecordInbound from ``clients`` callers spread over ``n`` client processes."""
    warmup, requests = inbound_requests(WARMUP), inbound_requests(messages)  # before timing
    before: dict[str, dict[int, float]] = {}

    def mark() -> None:
        before.update({name: cpu_seconds(pid) for name, pid in pids.items()})

    if n == 1:
        runs = [asyncio.run(drive(port, warmup, requests, clients, mark))]
    else:  # spawned, not forked: grpc does not survive a fork
        context = mp.get_context("spawn")
        barrier, results = context.Barrier(n + 1), context.Queue()
        workers = [
            context.Process(
                target=client_process,
                args=(port, (warmup[i::n], requests[i::n], clients // n), barrier, results),
            )
            for i in range(n)
        ]
        for worker in workers:
            worker.start()
        barrier.wait()
        mark()
        runs = [results.get(timeout=900) for _ in workers]  # a worker that raised never puts
        for worker in workers:
            worker.join()
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    wall = max(run["end"] for run in runs) - min(run["start"] for run in runs)
    latencies = [latency for run in runs for latency in run["latencies"]]
    return {
        "client_processes": n,
        "clients": clients // n * n,
        "calls": len(latencies),
        "calls_per_s": round(len(latencies) / wall),
        **summary(latencies),
        "wall_s": round(wall, 2),
        "client_cpu_s": round(sum(run["cpu"] for run in runs), 2),
        **{
            f"{name}_cpu_s": round(sum(s - before[name].get(p, 0.0) for p, s in now.items()), 2)
            for name, now in after.items()
        },
    }


async def unpublished_events(dsn: str) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    finally:
        await connection.close()


async def list_phase(port: int, conversation_id: str, count: int, repeats: int) -> Any:
    async with make_channel(f"127.0.0.1:{port}", token=DEV_ADMIN_TOKEN) as channel:
        stub = conversations_pb2_grpc.ConversationStoreStub(channel)
        await asyncio.wait_for(channel.channel_ready(), 60)
        request = functools.partial(
            pb.ListMessagesRequest, tenant_id=DEEP_TENANT, conversation_id=conversation_id
        )

        async def page(token: str) -> tuple[pb.ListMessagesResponse, float]:
            started = time.perf_counter()
            response = await stub.ListMessages(request(page_size=PAGE_SIZE, page_token=token))
            return response, time.perf_counter() - started

        for _ in range(20):
            await page("")
        tokens, walk, seen = [""], list[float](), set[str]()  # tokens[i] fetches page i
        started = time.perf_counter()
        while True:
            response, latency = await page(tokens[-1])
            walk.append(latency)
            seen.update(message.id for message in response.messages)
            if not response.next_page_token:
                break
            tokens.append(response.next_page_token)
        walked = time.perf_counter() - started
        if len(seen) != count or len(tokens) != -(-count // PAGE_SIZE):
            raise AssertionError(f"{len(tokens)} pages held {len(seen)} of {count} messages")
        depths = [0, len(tokens) // 2, len(tokens) - 1]
        again: list[list[float]] = [[] for _ in depths]
        for _ in range(repeats):  # in turn, so that drift touches all three alike
            for index, latencies in zip(depths, again, strict=True):
                latencies.append((await page(tokens[index]))[1])
    bands = [min(index, len(tokens) - 40) for index in depths]
    return {
        "messages": count,
        "page_size": PAGE_SIZE,
        "walk": {"pages": len(tokens), "seconds": round(walked, 2)}
        | {f"pages {i + 1}-{i + 40}": summary(walk[i : i + 40]) for i in bands},
        f"each fetched {repeats} times": {
            f"page {i + 1}": summary(latencies) for i, latencies in zip(depths, again, strict=True)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="RecordInbound calls")
    parser.add_argument("--clients", type=int, default=8, help="callers in flight")
    parser.add_argument("--client-processes", default="1,2", help="comma-separated: one run each")
    parser.add_argument("--deep", type=int, default=100_000, help="messages to list through")
    parser.add_argument("--repeats", type=int, default=500, help="fetches of each listed page")
    parser.add_argument("--profile", metavar="SVG", help="record the service with py-spy")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="wamesh-bench-") as data_dir,
        LocalInfra(Path(data_dir), durable=False) as infra,
    ):
        dsn = infra.postgres.dsn("conversations")
        upgrade_database(dsn, next(h for h in service_histories() if h.name == "conversations"))
        started = time.perf_counter()
        conversation_id, postmaster = asyncio.run(seed(dsn, args.deep))
        result: dict[str, Any] = {"seed_s": round(time.perf_counter() - started, 2)}
        port = free_port()
        service = serve(
            "conversations",
            {
                "WAMESH_DATABASE_URL": infra.postgres.dsn("conversations"),
                "WAMESH_REDIS_URL": infra.redis.url,
                "WAMESH_GRPC_LISTEN": f"127.0.0.1:{port}",
                "WAMESH_METRICS_LISTEN": "",
            },
            args.profile,
        )
        try:
            pids, result["record_inbound"] = {"service": service.pid, "postgres": postmaster}, []
            for n in (int(n) for n in args.client_processes.split(",")):
                phase = record_phase(port, pids, n, args.messages, args.clients)
                phase["outbox_unpublished_after"] = asyncio.run(unpublished_events(dsn))
                result["record_inbound"].append(phase)
            result["list_messages"] = asyncio.run(
                list_phase(port, conversation_id, args.deep, args.repeats)
            )
        finally:
            service.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
            service.wait(timeout=60)
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
