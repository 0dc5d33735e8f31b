"""ResolveNumber throughput and latency with 10,000 tenants, route cache cold and warm.

    .venv/bin/python tools/bench/resolve_number.py [--tenants 10000] [--concurrency 4,32]
        [--profile flame.svg]

Starts real PostgreSQL and Redis (the project's harness), seeds the tenants straight into
the database, runs ``wamesh serve tenants`` as its own process, and calls it from this one
over a real socket. Phases, in one run so they compare on the same noisy machine:

- cold: Redis flushed; each number resolved once (every call misses, reads Postgres and
  fills the cache);
- warm: every number resolved again, twice, in a new random order (every call hits Redis).

A benchmark, not a test: it prints figures and asserts only that answers are right.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from benchkit import serve

from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit.db import make_engine
from wamesh_kit.localinfra import LocalInfra, free_port
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_INTERNAL_TOKEN
from wamesh_tenants.schema import credentials, sender_numbers, tenants
from wamesh_tenants.settings import TenantsSettings
from wamesh_tenants.store import to_json
from wamesh_tenants.validation import bot, limits


def number_of(index: int) -> str:
    return f"+1555{index:07d}"


async def seed(database_url: str, count: int) -> None:
    cipher = TenantsSettings(database_url=database_url).cipher()
    default_limits, default_bot = to_json(limits(pb.Limits())), to_json(bot(pb.BotSettings()))
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            now = datetime.now(UTC)
            for start in range(0, count, 1000):
                ids = [f"bench-{i:05d}" for i in range(start, min(start + 1000, count))]
                await connection.execute(
                    sa.insert(tenants),
                    [
                        {
                            "id": tenant_id,
                            "create_request_id": tenant_id,
                            "display_name": tenant_id,
                            "status": "active",
                            "time_zone": "UTC",
                            "default_language": "en",
                            "support_contact": "",
                            "limits": default_limits,
                            "bot": default_bot,
                            "version": 1,
                            "created_at": now,
                            "updated_at": now,
                        }
                        for tenant_id in ids
                    ],
                )
                await connection.execute(
                    sa.insert(sender_numbers),
                    [
                        {
                            "number": number_of(int(tenant_id[6:])),
                            "tenant_id": tenant_id,
                            "messaging_service_sid": "",
                            "added_at": now,
                        }
                        for tenant_id in ids
                    ],
                )
                await connection.execute(
                    sa.insert(credentials),
                    [
                        {
                            "tenant_id": tenant_id,
                            "account_sid": "AC" + "0" * 32,
                            "api_key_sid": "",
                            "key_id": cipher.active_key_id,
                            "auth_token": cipher.seal(
                                "bench-token", tenant_id=tenant_id, field="auth_token"
                            ).ciphertext,
                            "api_key_secret": None,
                            "updated_at": now,
                        }
                        for tenant_id in ids
                    ],
                )
    finally:
        await engine.dispose()


async def run_phase(stub: Any, numbers: list[int], concurrency: int) -> dict[str, float]:
    """Resolve every number once with ``concurrency`` callers; calls/s and latency in ms."""
    latencies: list[float] = []
    queue = iter(numbers)

    async def caller() -> None:
        for index in queue:
            started = time.perf_counter()
            route = await stub.ResolveNumber(pb.ResolveNumberRequest(number=number_of(index)))
            latencies.append(time.perf_counter() - started)
            if route.tenant_id != f"bench-{index:05d}":
                raise AssertionError(f"{number_of(index)} resolved to {route.tenant_id}")

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "calls": len(latencies),
        "calls_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(cuts[49] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


async def measure(
    port: int, redis_url: str, count: int, concurrencies: list[int]
) -> dict[str, Any]:
    results: dict[str, Any] = {"tenants": count}
    async with make_channel(f"127.0.0.1:{port}", token=DEV_INTERNAL_TOKEN) as channel:
        stub = tenants_pb2_grpc.TenantRegistryStub(channel)
        await asyncio.wait_for(channel.channel_ready(), 60)
        numbers = list(range(count))
        await run_phase(stub, random.sample(numbers, 200), 4)  # connections and pools up
        for concurrency in concurrencies:
            redis.Redis.from_url(redis_url).flushdb()
            random.shuffle(numbers)
            cold = await run_phase(stub, numbers, concurrency)
            random.shuffle(numbers)
            warm = await run_phase(stub, numbers * 2, concurrency)
            results[f"concurrency {concurrency}"] = {"cold": cold, "warm": warm}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument(
        "--concurrency", default="4,32", help="callers in flight, comma-separated: one run each"
    )
    parser.add_argument("--profile", metavar="SVG", help="record the service with py-spy")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="wamesh-bench-") as data_dir,
        LocalInfra(Path(data_dir), durable=False) as infra,
    ):
        history = next(h for h in service_histories() if h.name == "tenants")
        upgrade_database(infra.postgres.dsn("tenants"), history)
        asyncio.run(seed(infra.postgres.dsn("tenants"), args.tenants))
        port = free_port()
        service = serve(
            "tenants",
            {
                "WAMESH_DATABASE_URL": infra.postgres.dsn("tenants"),
                "WAMESH_REDIS_URL": infra.redis.url,
                "WAMESH_GRPC_LISTEN": f"127.0.0.1:{port}",
                "WAMESH_METRICS_LISTEN": "",
            },
            args.profile,
        )
        try:
            concurrencies = [int(c) for c in args.concurrency.split(",")]
            result = asyncio.run(measure(port, infra.redis.url, args.tenants, concurrencies))
        finally:
            service.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
            service.wait(timeout=60)
    result["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
