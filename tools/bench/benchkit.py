"""What the benchmarks share: starting a process to measure, optionally under py-spy, and
the load generator (raw asyncio sockets: an HTTP client library would be the bottleneck)."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


def serve(
    service: str, env: Mapping[str, str], profile: str | None = None
) -> subprocess.Popen[bytes]:
    """``wamesh serve <service>`` with ``env`` on top of ours (logs at WARNING)."""
    return start([sys.executable, "-m", "wamesh_kit", "serve", service], env, profile)


def start(
    command: Sequence[str], env: Mapping[str, str], profile: str | None = None
) -> subprocess.Popen[bytes]:
    """``command`` in the background; with ``profile``, py-spy samples it into that file:
    collapsed stacks for a ``.txt``, a flame graph otherwise. Its stdout goes to our stderr,
    so that a benchmark's stdout holds its figures alone."""
    argv = list(command)
    if profile:
        spy = str(Path(sys.executable).parent / "py-spy")
        output_format = "raw" if profile.endswith(".txt") else "flamegraph"
        argv = [spy, "record", "-r", "200", "-f", output_format, "-o", profile, "--", *argv]
    return subprocess.Popen(
        argv,
        env={**os.environ, "WAMESH_LOG_LEVEL": "WARNING", **env},
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,
    )


@dataclass
class Results:
    latencies: list[float]
    failures: int
    elapsed: float

    def summary(self) -> dict[str, float]:
        cuts = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else [0] * 99
        return {
            "requests": len(self.latencies) + self.failures,
            "failures": self.failures,
            "per_s": round(len(self.latencies) / self.elapsed),
            "p50_ms": round(cuts[49] * 1000, 2),
            "p99_ms": round(cuts[98] * 1000, 2),
        }


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    expect: bytes = b"HTTP/1.1 200",
) -> bool:
    """One request on a keep-alive connection; whether its answer starts with ``expect``."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return head.startswith(expect)


async def closed_loop(
    port: int, requests: list[bytes], connections: int, expect: bytes = b"HTTP/1.1 200"
) -> Results:
    """``requests`` over ``connections`` keep-alive connections, each sending its next as
    soon as the last is answered: throughput at saturation."""
    queue = iter(requests)
    latencies: list[float] = []
    failures = 0

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for request in queue:
            started = time.perf_counter()
            if await exchange(reader, writer, request, expect):
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)))
    return Results(latencies, failures, time.perf_counter() - started)


async def open_loop(port: int, requests: list[bytes], rate: float, connections: int) -> Results:
    """Send at ``rate``/s whatever the answers do; latency from each request's due time."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()

    async def send(due: float, request: bytes) -> None:
        nonlocal failures
        reader, writer = await pool.get()
        try:
            ok = await exchange(reader, writer, request)
        finally:
            pool.put_nowait((reader, writer))
        if ok:
            latencies.append(time.perf_counter() - due)
        else:
            failures += 1

    tasks = []
    for index, request in enumerate(requests):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(due, request)))
    await asyncio.gather(*tasks)
    return Results(latencies, failures, time.perf_counter() - start)
