"""Webhook ingress throughput and ack latency, against a bare Starlette app as the ceiling.

    .venv/bin/python tools/bench/ingress.py [--tenants 1000] [--customers 50000]
        [--seconds 10] [--connections 32,64,128,256] [--paced-connections 32]
        [--profile stacks.txt [--profiled conversations]]

One run, same machine, side by side:

- (a) bare: a Starlette app under the same uvicorn (uvloop, httptools) that parses the same
  form and answers ``<Response/>``: the most any Python ingress could do here;
- (b) wamesh: ingress → tenants (cached after the first request per tenant) → Redis
  (dedup, rate) → conversations → Postgres, all real, each service its own process.

For each: throughput at saturation, then p50/p99 ack latency at 200 and 500 requests/s
offered (open loop over a pool of ``--paced-connections``: latency counts from when a
request was due, so a stall is not hidden). Saturation is the best of closed loops at each
of ``--connections`` keep-alive connections: the bare app is saturated by a few, while
wamesh's pipeline (batched Redis and store calls) reaches its plateau with more requests
in flight, as Twilio's many concurrent connections give it (near 256 here: 512 added
nothing). At each concurrency the two
run back to back, and the ratio is also given per concurrency. Every request is a distinct,
correctly signed webhook over ``--tenants`` tenants and ``--customers`` customers. The
load generator is raw asyncio sockets: an HTTP client library would be the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
import uvloop
from benchkit import Results, closed_loop, exchange, open_loop, serve, start
from twilio.request_validator import RequestValidator

from wamesh.tenants.v1 import tenants_pb2 as tenants_pb
from wamesh_kit.db import make_engine
from wamesh_kit.localinfra import LocalInfra, free_port
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_tenants.schema import credentials, sender_numbers, tenants
from wamesh_tenants.settings import TenantsSettings
from wamesh_tenants.store import to_json
from wamesh_tenants.validation import bot, limits

TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


def bare_app() -> Any:
    """The ceiling: parse the form as ingress does, answer empty TwiML."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def webhook(request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if "MessageSid" not in form:
            return Response(status_code=400)
        return Response(TWIML, media_type="text/xml")

    return Starlette(routes=[Route("/twilio/whatsapp", webhook, methods=["POST"])])


def tenant_id(index: int) -> str:
    return f"bench-{index:05d}"


def sender(index: int) -> str:
    return f"+1444{index:07d}"


def auth_token(index: int) -> str:
    return f"{index:032x}"


async def seed_tenants(database_url: str, count: int) -> None:
    cipher = TenantsSettings(database_url=database_url).cipher()
    limit = to_json(limits(tenants_pb.Limits(inbound_messages_per_minute=1000)))
    settings = to_json(bot(tenants_pb.BotSettings()))
    now = datetime.now(UTC)
    engine = make_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            ids = range(count)
            await connection.execute(
                sa.insert(tenants),
                [
                    {
                        "id": tenant_id(i),
                        "create_request_id": tenant_id(i),
                        "display_name": tenant_id(i),
                        "status": "active",
                        "time_zone": "UTC",
                        "default_language": "en",
                        "support_contact": "",
                        "limits": limit,
                        "bot": settings,
                        "version": 1,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in ids
                ],
            )
            await connection.execute(
                sa.insert(sender_numbers),
                [
                    {
                        "number": sender(i),
                        "tenant_id": tenant_id(i),
                        "messaging_service_sid": "",
                        "added_at": now,
                    }
                    for i in ids
                ],
            )
            await connection.execute(
                sa.insert(credentials),
                [
                    {
                        "tenant_id": tenant_id(i),
                        "account_sid": "AC" + "0" * 32,
                        "api_key_sid": "",
                        "key_id": cipher.active_key_id,
                        "auth_token": cipher.seal(
                            auth_token(i), tenant_id=tenant_id(i), field="auth_token"
                        ).ciphertext,
                        "api_key_secret": None,
                        "updated_at": now,
                    }
                    for i in ids
                ],
            )
    finally:
        await engine.dispose()


class Webhooks:
    """Distinct signed webhook requests, as raw HTTP/1.1 bytes, made ahead of time."""

    def __init__(self, port: int, tenant_count: int, customer_count: int) -> None:
        self._url = f"http://127.0.0.1:{port}/twilio/whatsapp"
        self._host = f"127.0.0.1:{port}"
        self._validators = [RequestValidator(auth_token(i)) for i in range(tenant_count)]
        self._tenants = tenant_count
        self._customers = customer_count
        self._serial = 0

    def make(self, tenant: int | None = None) -> bytes:
        self._serial += 1
        tenant = random.randrange(self._tenants) if tenant is None else tenant
        customer = f"+1555{random.randrange(self._customers):07d}"
        sid = f"SM{random.getrandbits(96):024x}{self._serial:08x}"
        params = {
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ProfileName": "Ana",
            "MessageType": "text",
            "SmsSid": sid,
            "WaId": customer[1:],
            "SmsStatus": "received",
            "Body": "Hola, quiero dos paellas para llevar",
            "To": f"whatsapp:{sender(tenant)}",
            "NumSegments": "1",
            "ReferralNumMedia": "0",
            "MessageSid": sid,
            "AccountSid": "AC" + "0" * 32,
            "From": f"whatsapp:{customer}",
            "ApiVersion": "2010-04-01",
        }
        body = urlencode(params).encode()
        signature = self._validators[tenant].compute_signature(self._url, params)
        head = (
            f"POST /twilio/whatsapp HTTP/1.1\r\nHost: {self._host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nX-Twilio-Signature: {signature}\r\n\r\n"
        )
        return head.encode() + body


async def wait_http(port: int) -> None:
    for _ in range(600):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


async def wait_ready(port: int) -> None:
    """Until ingress's /readyz answers 200: Redis, tenants and conversations all reachable."""
    request = f"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    for _ in range(600):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            if await exchange(reader, writer, request):
                return
        finally:
            writer.close()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"ingress on {port} never became ready")


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far (user + system) of each named process and its descendants
    (Postgres backends, a profiled service under py-spy); this process counts alone, since
    every server here is its descendant."""
    import psutil  # type: ignore[import-untyped]

    def tree(pid: int) -> float:
        root = psutil.Process(pid)
        family = [root] if pid == os.getpid() else [root, *root.children(recursive=True)]
        return sum(sum(p.cpu_times()[:2]) for p in family)

    return {name: tree(pid) for name, pid in pids.items()}


def server_pids(infra: LocalInfra) -> dict[str, int]:
    import psutil

    postmaster = int((infra.postgres.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    redis = next(
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if "redis-server" in (p.info["name"] or "")
        and str(infra.redis.port) in " ".join(p.info["cmdline"] or [])
    )
    return {"postgres": postmaster, "redis": redis}


@dataclass
class Target:
    """One side of the comparison: where it listens and whose CPU it spends."""

    name: str
    port: int
    pids: dict[str, int]
    webhooks: Webhooks


async def costed(target: Target, requests: int, load: Awaitable[Results]) -> dict[str, Any]:
    """``load``'s summary, with the CPU each process spent per request meanwhile."""
    before = cpu_seconds(target.pids)
    outcome = await load
    spent = {name: used - before[name] for name, used in cpu_seconds(target.pids).items()}
    per_request_ms = {name: round(1000 * seconds / requests, 3) for name, seconds in spent.items()}
    return {**outcome.summary(), "cpu_ms_per_request": per_request_ms}


async def saturate(target: Target, args: argparse.Namespace, connections: int) -> dict[str, Any]:
    burst = [target.webhooks.make() for _ in range(int(args.seconds * args.saturation_guess))]
    return await costed(target, len(burst), closed_loop(target.port, burst, connections))


async def paced(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    result = {}
    for rate in args.rates:
        requests = [target.webhooks.make() for _ in range(int(rate * args.seconds))]
        load = open_loop(target.port, requests, rate, args.paced_connections)
        result[f"offered {rate}/s"] = await costed(target, len(requests), load)
    return result


async def compare(bare: Target, wamesh: Target, args: argparse.Namespace) -> dict[str, Any]:
    """Each concurrency's bare and wamesh runs back to back, so that a pair shares the
    machine's mood (a shared host: the same code's CPU per request drifts by half)."""
    for target in (bare, wamesh):
        await wait_http(target.port)
    await wait_ready(wamesh.port)
    # One request per tenant: the ingress's route cache and every pool are warm.
    warmup = await closed_loop(
        wamesh.port, [wamesh.webhooks.make(t) for t in range(args.tenants)], 16
    )
    closed: dict[str, dict[str, Any]] = {bare.name: {}, wamesh.name: {}}
    for connections in args.connections:
        for target in (bare, wamesh):
            run = await saturate(target, args, connections)
            closed[target.name][f"{connections} connections"] = run
    result: dict[str, Any] = {}
    for target in (bare, wamesh):
        runs = closed[target.name]
        result[target.name] = {
            "saturation": max(run["per_s"] for run in runs.values()),
            "closed loop": runs,
            **await paced(target, args),
        }
    result["warmup"] = warmup.summary()
    return result


def stored_count(database_url: str) -> int:
    async def count() -> int:
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.connect() as connection:
                return int(await connection.scalar(sa.text("SELECT count(*) FROM messages")) or 0)
        finally:
            await engine.dispose()

    return asyncio.run(count())


def run(args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="wamesh-bench-") as data_dir,
        LocalInfra(Path(data_dir), durable=False) as infra,
    ):
        histories = {h.name: h for h in service_histories()}
        for name in ("tenants", "conversations"):
            upgrade_database(infra.postgres.dsn(name), histories[name])
        asyncio.run(seed_tenants(infra.postgres.dsn("tenants"), args.tenants))
        ports = {name: free_port() for name in ("tenants", "conversations", "ingress", "bare")}
        common = {"WAMESH_REDIS_URL": infra.redis.url, "WAMESH_METRICS_LISTEN": ""}
        children = [
            start([sys.executable, __file__, "--serve-bare", f"127.0.0.1:{ports['bare']}"], {}),
            serve(
                "tenants",
                {
                    **common,
                    "WAMESH_GRPC_LISTEN": f"127.0.0.1:{ports['tenants']}",
                    "WAMESH_DATABASE_URL": infra.postgres.dsn("tenants"),
                },
            ),
            serve(
                "conversations",
                {
                    **common,
                    "WAMESH_GRPC_LISTEN": f"127.0.0.1:{ports['conversations']}",
                    "WAMESH_DATABASE_URL": infra.postgres.dsn("conversations"),
                },
                args.profile if args.profiled == "conversations" else None,
            ),
            serve(
                "ingress",
                {
                    **common,
                    "WAMESH_HTTP_LISTEN": f"127.0.0.1:{ports['ingress']}",
                    "WAMESH_TENANTS_TARGET": f"127.0.0.1:{ports['tenants']}",
                    "WAMESH_CONVERSATIONS_TARGET": f"127.0.0.1:{ports['conversations']}",
                    "WAMESH_PER_IP_REQUESTS_PER_S": "1000000",
                    "WAMESH_PER_IP_BURST": "1000000",
                },
                args.profile if args.profiled == "ingress" else None,
            ),
        ]
        try:
            names = ("bare", "tenants", "conversations", "ingress")  # the order of children
            pids = {name: child.pid for name, child in zip(names, children, strict=True)}
            loadgen = {"load generator": os.getpid()}
            bare_pids = {"bare": pids.pop("bare"), **loadgen}
            wamesh_pids = {**pids, **server_pids(infra), **loadgen}
            targets = [
                Target(
                    name, ports[port], pids_of, Webhooks(ports[port], args.tenants, args.customers)
                )
                for name, port, pids_of in (
                    ("a_bare", "bare", bare_pids),
                    ("b_wamesh", "ingress", wamesh_pids),
                )
            ]
            measured = uvloop.run(compare(*targets, args))
            bare, wamesh = measured["a_bare"], measured["b_wamesh"]
            stored = stored_count(infra.postgres.dsn("conversations"))
        finally:
            for child in children:
                child.send_signal(signal.SIGINT)
            for child in children:
                child.wait(timeout=60)
    paced_runs = [run for name, run in wamesh.items() if name.startswith("offered")]
    runs = [measured["warmup"], *wamesh["closed loop"].values(), *paced_runs]
    sent = sum(run["requests"] for run in runs)
    return {
        "tenants": args.tenants,
        "customers": args.customers,
        "a_bare": bare,
        "b_wamesh": wamesh,
        "ratio_b_over_a_at_saturation": round(wamesh["saturation"] / bare["saturation"], 3),
        "ratio_b_over_a_by_connections": {
            level: round(run["per_s"] / bare["closed loop"][level]["per_s"], 3)
            for level, run in wamesh["closed loop"].items()
        },
        "webhooks_acknowledged": sent - sum(run["failures"] for run in runs),
        "webhooks_stored": stored,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--connections",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[32, 64, 128, 256],
        help="closed-loop concurrencies tried for saturation",
    )
    parser.add_argument("--paced-connections", type=int, default=32)
    parser.add_argument(
        "--rates",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[200, 500],
        help="requests per second offered in the open-loop runs",
    )
    parser.add_argument(
        "--saturation-guess", type=int, default=1500, help="requests per second to prepare"
    )
    parser.add_argument("--profile", metavar="TXT", help="py-spy a service (raw stacks)")
    parser.add_argument("--profiled", default="ingress", choices=["ingress", "conversations"])
    parser.add_argument("--serve-bare", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        import uvicorn

        host, _, port = args.serve_bare.rpartition(":")
        uvicorn.run(
            bare_app(),
            host=host,
            port=int(port),
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level="warning",
        )
        return
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
