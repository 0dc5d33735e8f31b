"""Message creates per second the Twilio sandbox answers: it must never be what limits a
benchmark of sending.

    .venv/bin/python tools/bench/sandbox.py [--messages 30000] [--connections 16,64,256]
        [--recipients 5000] [--profile stacks.txt]

Starts ``wamesh dev run sandbox`` (uvicorn, httptools, uvloop, no per-request logging) in
its own process and sends it signed-in ``POST …/Messages.json`` creates of a WhatsApp
template (so every message walks queued, sent, delivered, read in the background, as in a
real run) from raw asyncio sockets over keep-alive connections: closed loops at each of
``--connections``, best of them reported, with the sandbox's CPU per create.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import sys
import time
from typing import Any
from urllib.parse import urlencode

import psutil
import uvloop
from benchkit import closed_loop, start

from wamesh_sandbox.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, DEV_SENDER

TEMPLATE = "HX00000000000000000000000000000001"  # the development account knows it


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def creates(count: int, recipients: int) -> list[bytes]:
    token = base64.b64encode(f"{DEV_ACCOUNT_SID}:{DEV_AUTH_TOKEN}".encode()).decode()
    path = f"/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Messages.json"
    requests = []
    for index in range(count):
        body = urlencode(
            {
                "To": f"whatsapp:+1555{index % recipients:07d}",
                "From": DEV_SENDER,
                "ContentSid": TEMPLATE,
                "ContentVariables": json.dumps({"1": str(index)}),
            }
        ).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append(head + body)
    return requests


async def wait_up(port: int) -> None:
    for _ in range(600):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError("the sandbox did not start")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {"WAMESH_SANDBOX_LISTEN": f"127.0.0.1:{port}", "WAMESH_SANDBOX_LOG_LEVEL": "WARNING"}
    server = start([sys.executable, "-m", "wamesh_kit", "dev", "run", "sandbox"], env, args.profile)
    try:
        await wait_up(port)
        process = psutil.Process(server.pid)
        if args.profile:  # py-spy's child is the sandbox
            process = process.children()[0] if process.children() else process
        await closed_loop(port, creates(2000, args.recipients), 16, b"HTTP/1.1 201")  # warm
        runs: dict[str, Any] = {}
        for connections in args.connections:
            burst = creates(args.messages, args.recipients)
            cpu_before = sum(process.cpu_times()[:2])
            results = await closed_loop(port, burst, connections, b"HTTP/1.1 201")
            cpu = sum(process.cpu_times()[:2]) - cpu_before
            runs[f"{connections} connections"] = {
                **results.summary(),
                "sandbox_cpu_ms_per_create": round(cpu * 1000 / args.messages, 3),
            }
            await asyncio.sleep(1)  # let the background status walks finish
        best = max(run["per_s"] for run in runs.values())
        return {"creates_per_s_best": best, "runs": runs, "machine": {"cpus": psutil.cpu_count()}}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--recipients", type=int, default=5_000)
    parser.add_argument(
        "--connections",
        type=lambda raw: [int(part) for part in raw.split(",")],
        default=[16, 64, 256],
    )
    parser.add_argument("--profile", metavar="TXT", help="py-spy the sandbox (raw stacks)")
    args = parser.parse_args()
    started = time.time()
    figures = uvloop.run(measure(args))
    figures["seconds"] = round(time.time() - started, 1)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
