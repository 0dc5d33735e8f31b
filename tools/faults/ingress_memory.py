"""What ingress's memory holds after the store stalls: garbage, a grown structure, or a leak.

    .venv/bin/python -m tools.faults.ingress_memory [--rate 150] [--freeze 10] [--stalls 2]
        [--no-tracemalloc] [--out /tmp/ingress-memory.json]

Runs the real mesh (tools/faults/mesh.py) but stops its ingress process and serves a second
ingress in a child process of this script, started as ``wamesh serve ingress`` starts it
(uvloop, httptools, the startup heap frozen) and watched: tracemalloc (``--frames`` deep,
off with ``--no-tracemalloc`` for clean RSS figures), psutil, the collector's counts and
objects by type, pymalloc's arenas (``sys._debugmallocstats``), glibc's ``mallinfo2``, and
the sizes of the ingress's own structures (GroupCommit waiting lists, the per-source
budget, the route cache, the Redis pool, uvicorn's connections, the metrics' children).
Load comes from a Twilio-like sender here (tools/faults/twilio_sender.py: a connection
per webhook, retries) and never shares the measured heap.

The child is measured at: start, after ``--warm`` seconds of load without a stall, then for
each of ``--stalls`` identical stalls (load at ``--rate`` for ``--lead`` s, PostgreSQL
SIGSTOPped for ``--freeze`` s under it, ``--tail`` s more): right after the last answer,
after the spill drained and ``--idle`` s passed, and once more after ``gc.collect()``;
at last after ``malloc_trim(0)``. Prints a table of the figures and, between points, the
top growth by allocation site and by traceback, the objects whose count grew, and pymalloc
and glibc totals. A measurement, not a test.

tracemalloc costs the child several times its CPU: on a small machine a long freeze then
overloads it (webhooks go unanswered) and its snapshots move RSS themselves; and pymalloc
hides from ``sys._debugmallocstats`` while it runs. So take RSS, pymalloc and glibc figures
from a ``--no-tracemalloc`` run, and what holds the memory from a traced one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import linecache
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psutil  # type: ignore[import-untyped]

if TYPE_CHECKING:  # the parent's alone: the measured child never imports them
    from tools.faults.mesh import FaultMesh
    from tools.faults.twilio_sender import Delivery, TwilioSender

MB = 2**20


# -- the child: the ingress under watch --------------------------------------------------


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",  # non-mmapped bytes taken from the OS (brk and arenas)
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",  # bytes in mmapped chunks
            "usmblks",
            "fsmblks",
            "uordblks",  # bytes in use
            "fordblks",  # bytes free, held
            "keepcost",
        )
    ]


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


LIBC = _libc()


def glibc_malloc() -> dict[str, float]:
    """glibc's view: what it took from the OS, what of that is in use, what it holds free."""
    if LIBC is None or not hasattr(LIBC, "mallinfo2"):
        return {}
    LIBC.mallinfo2.restype = _MallInfo2
    info = LIBC.mallinfo2()
    return {
        "heap_mb": round(info.arena / MB, 1),
        "mmapped_mb": round(info.hblkhd / MB, 1),
        "in_use_mb": round(info.uordblks / MB, 1),
        "free_held_mb": round(info.fordblks / MB, 1),
    }


def malloc_trim() -> None:
    if LIBC is not None:
        LIBC.malloc_trim(0)


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Point file descriptor 2 (C's stderr) at ``path`` for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("wb") as target:
        os.dup2(target.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def pymalloc() -> dict[str, float]:
    """pymalloc's arenas now and at their highest, and how full they are. Empty while
    tracemalloc runs: its hooks hide pymalloc from ``sys._debugmallocstats``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stats"
        with _stderr_to(path):
            sys._debugmallocstats()
        text = path.read_text(errors="replace")

    def number(pattern: str) -> int:
        found = re.search(pattern, text, re.MULTILINE)
        return int(found.group(1).replace(",", "")) if found else -1

    arenas = number(r"^# arenas allocated current\s*=\s*([\d,]+)")
    if arenas < 0:
        return {}
    arena_bytes = number(r"^\d+ arenas \* (\d+) bytes/arena")
    free = [
        number(r"^# bytes in available blocks\s*=\s*([\d,]+)"),
        number(r"^\d+ unused pools \* \d+ bytes\s*=\s*([\d,]+)"),
        number(r"^# bytes lost to pool headers\s*=\s*([\d,]+)"),
        number(r"^# bytes lost to quantization\s*=\s*([\d,]+)"),
    ]
    return {
        "arenas": arenas,
        "arenas_highwater": number(r"^# arenas highwater mark\s*=\s*([\d,]+)"),
        "arenas_mb": round(arenas * arena_bytes / MB, 1),
        "blocks_in_use_mb": round(number(r"^# bytes in allocated blocks\s*=\s*([\d,]+)") / MB, 1),
        "free_in_arenas_mb": round(sum(free) / MB, 1),
    }


def glibc_arenas() -> dict[str, float]:
    """glibc's arenas (one per thread that malloc'd, up to 8 a core) and what each holds."""
    if LIBC is None:
        return {}
    LIBC.fopen.restype = ctypes.c_void_p
    LIBC.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    LIBC.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    LIBC.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "info.xml"
        stream = LIBC.fopen(str(path).encode(), b"w")
        if not stream:
            return {}
        LIBC.malloc_info(0, stream)
        LIBC.fclose(stream)
        text = path.read_text()
    heaps = re.findall(r'<heap nr="\d+">.*?<system type="current" size="(\d+)"/>', text, re.S)
    return {
        "arenas": len(heaps),
        "per_arena_mb": [round(int(size) / MB, 1) for size in heaps],  # type: ignore[dict-item]
    }


def rss() -> dict[str, float]:
    status = Path("/proc/self/status").read_text()
    anon = re.search(r"^RssAnon:\s+(\d+) kB", status, re.MULTILINE)
    return {
        "rss_mb": round(psutil.Process().memory_info().rss / MB, 1),
        "rss_anon_mb": round(int(anon.group(1)) / 1024, 1) if anon else -1.0,
        "threads": psutil.Process().num_threads(),
    }


def _size(get: Any) -> int:
    try:
        return int(get())
    except Exception:  # a structure renamed by a refactor: say so, do not fail
        return -1


class Watch:
    """Finds the ingress's structures once it runs, and measures on command."""

    def __init__(self, front: Any, server: Any, snapshots: Path) -> None:
        self._front = front
        self._server = server
        self._snapshots = snapshots
        self._ingress: Any = None
        self._peaks: Counter[str] = Counter()  # highest since the last probe

    async def sample(self, every_s: float = 0.05) -> None:
        """Keep the highest of the quick figures between probes: the stall's high-water."""
        process = psutil.Process()
        while True:
            now = {"rss_mb": round(process.memory_info().rss / MB, 1), **self.in_flight()}
            for key, value in now.items():
                self._peaks[key] = max(self._peaks[key], value)
            await asyncio.sleep(every_s)

    def _find_ingress(self) -> Any:
        # Through the front's bound endpoints: gc.get_objects() cannot see the Ingress,
        # made before the startup heap was frozen out of the collector's reach.
        if self._ingress is None:
            endpoint = next(iter(getattr(self._front, "_webhooks", {}).values()), None)
            self._ingress = getattr(endpoint, "__self__", None)
        return self._ingress

    def in_flight(self) -> dict[str, int]:
        ingress, state = self._find_ingress(), self._server.server_state
        return {
            "uvicorn_connections": _size(lambda: len(state.connections)),
            "uvicorn_tasks": _size(lambda: len(state.tasks)),
            "group_commit_waiting": _size(lambda: len(ingress.deps.batcher._waiting)),
            "spill_waiting": _size(lambda: len(ingress.deps.spill._appends._waiting)),
            "asyncio_tasks": _size(lambda: len(asyncio.all_tasks())),
        }

    def structures(self) -> dict[str, int]:
        ingress, front, state = self._find_ingress(), self._front, self._server.server_state
        # Any: a missing one (a refactor) reads as -1 below, never as a failure.
        deps: Any = getattr(ingress, "deps", None)
        pool: Any = getattr(getattr(deps, "redis", None), "connection_pool", None)
        readers = [getattr(c, "_reader", None) for c in getattr(pool, "_available_connections", [])]
        metrics: Any = getattr(ingress, "_metrics", None)
        return {
            "group_commit_waiting": _size(lambda: len(ingress.deps.batcher._waiting)),
            "group_commit_tasks": _size(lambda: len(ingress.deps.batcher._tasks)),
            "spill_waiting": _size(lambda: len(ingress.deps.spill._appends._waiting)),
            "source_budgets": _size(lambda: len(front._budget._buckets)),
            "routes": _size(lambda: len(ingress.deps.routes._routes)),
            "route_lookups": _size(lambda: len(ingress.deps.routes._loading)),
            "asyncio_tasks": _size(lambda: len(asyncio.all_tasks())),
            "uvicorn_connections": _size(lambda: len(state.connections)),
            "uvicorn_tasks": _size(lambda: len(state.tasks)),
            "redis_idle_connections": _size(lambda: len(pool._available_connections)),
            "redis_busy_connections": _size(lambda: len(pool._in_use_connections)),
            "redis_read_buffers_bytes": _size(
                lambda: sum(len(getattr(r, "_buffer", b"")) for r in readers if r is not None)
            ),
            "latency_children": _size(lambda: len(metrics.latency._metrics)),
            "request_children": _size(lambda: len(metrics.requests._metrics)),
        }

    def probe(self, name: str, *, collect: bool, trim: bool) -> dict[str, Any]:
        """Measure, in the loop's thread: no request moves meanwhile."""
        if collect:
            gc.collect()
        figures: dict[str, Any] = {"name": name, **rss()}
        if tracemalloc.is_tracing():
            current, peak = tracemalloc.get_traced_memory()
            figures["traced_mb"] = round(current / MB, 1)
            figures["traced_peak_mb"] = round(peak / MB, 1)
            figures["tracemalloc_own_mb"] = round(tracemalloc.get_tracemalloc_memory() / MB, 1)
            tracemalloc.reset_peak()
        figures["pymalloc"] = pymalloc()
        figures["glibc"] = glibc_malloc()
        figures["glibc_arenas"] = glibc_arenas()
        figures["gc_count"] = list(gc.get_count())
        everything = gc.get_objects()
        figures["gc_objects"] = len(everything)
        figures["types"] = dict(
            Counter(type(o).__module__ + "." + type(o).__qualname__ for o in everything)
        )
        del everything
        figures["structures"] = self.structures()
        figures["peaks_since_last"] = dict(self._peaks)
        self._peaks.clear()
        if tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, __file__),
                ]
            )
            path = self._snapshots / f"{name}.snapshot"
            snapshot.dump(str(path))
            figures["snapshot"] = str(path)
            del snapshot
        if trim:
            malloc_trim()
            figures["trimmed"] = {**rss(), "glibc": glibc_malloc()}
        return figures


async def _commands(watch: Watch, out: IO[str]) -> None:
    """One JSON command a line on stdin, one JSON answer a line on ``out``, until EOF."""
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        command = json.loads(line)
        answer = watch.probe(
            command["name"], collect=command.get("collect", False), trim=command.get("trim", False)
        )
        out.write(json.dumps(answer) + "\n")
        out.flush()


async def _serve(args: argparse.Namespace, out: IO[str]) -> None:
    import uvicorn
    from prometheus_client import CollectorRegistry

    from wamesh_ingress.__main__ import uvicorn_options
    from wamesh_ingress.app import create_app
    from wamesh_ingress.settings import IngressSettings
    from wamesh_kit.heap import freeze_startup_heap

    settings = IngressSettings(
        http_listen=f"127.0.0.1:{args.port}",
        redis_url=args.redis_url,
        tenants_target=args.tenants_target,
        conversations_target=args.conversations_target,
        per_ip_requests_per_s=100_000,
        per_ip_burst=100_000,
    )
    front = create_app(settings, registry=CollectorRegistry())
    config = uvicorn.Config(
        front,
        host="127.0.0.1",
        port=args.port,
        loop="none",  # already on uvloop, as uvicorn.run(loop="uvloop") would be
        lifespan="on",
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    freeze_startup_heap()  # as ``wamesh serve ingress`` does, before any traffic
    if args.frames:
        tracemalloc.start(args.frames)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    try:
        watch = Watch(front, server, Path(args.snapshots))
        sampling = asyncio.create_task(watch.sample())
        await _commands(watch, out)
    finally:
        sampling.cancel()
        server.should_exit = True
        await serving


def serve(args: argparse.Namespace) -> None:
    import uvloop

    # Answers go on a copy of stdout; anything else printing to stdout cannot garble them.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    uvloop.run(_serve(args, out))


# -- the parent: mesh, load, stalls, report ----------------------------------------------


class Child:
    def __init__(self, mesh: FaultMesh, args: argparse.Namespace, snapshots: Path) -> None:
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "tools.faults.ingress_memory",
            "--serve",
            f"--port={self.port}",
            f"--redis-url={mesh.infra.redis.url}",
            f"--tenants-target=127.0.0.1:{mesh.ports['tenants']}",
            f"--conversations-target=127.0.0.1:{mesh.ports['conversations']}",
            f"--frames={0 if args.no_tracemalloc else args.frames}",
            f"--snapshots={snapshots}",
        ]
        self._log = (mesh.data_dir / "ingress-memory.log").open("ab")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        self._lock = threading.Lock()
        ready = self._read()
        self.pid = int(ready["pid"])

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the measured ingress exited: see {self._log.name}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def probe(self, name: str, *, collect: bool = False, trim: bool = False) -> dict[str, Any]:
        assert self.process.stdin is not None
        with self._lock:
            self.process.stdin.write(
                json.dumps({"name": name, "collect": collect, "trim": trim}) + "\n"
            )
            self.process.stdin.flush()
            return self._read()

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def free_port() -> int:
    from wamesh_kit.localinfra import free_port as pick

    return pick()


async def offer(
    mesh: FaultMesh,
    sender: TwilioSender,
    args: argparse.Namespace,
    *,
    seconds: float,
    freeze_s: float,
    tag: str,
) -> dict[str, Any]:
    """Load at ``args.rate`` for ``seconds``, Postgres frozen ``freeze_s`` after ``args.lead``."""
    webhooks = [
        sender.webhook(f"+1555{i % 1000:07d}", f"{tag} #{i}")
        for i in range(int(args.rate * seconds))
    ]

    def freeze() -> None:
        with mesh.frozen(mesh.postgres_pid()):
            time.sleep(freeze_s)

    async def fault() -> None:
        if freeze_s > 0:
            await asyncio.sleep(args.lead)
            await asyncio.to_thread(freeze)

    deliveries: list[Delivery]
    deliveries, _ = await asyncio.gather(sender.offer(webhooks, args.rate), fault())
    statuses = Counter(str(a.status) for d in deliveries for a in d.attempts)
    return {
        "webhooks": len(webhooks),
        "acknowledged": sum(d.acknowledged for d in deliveries),
        "attempt_statuses": dict(statuses),
    }


_PLUMBING = ("<frozen runpy>", "asyncio/runners.py", "uvloop/__init__.py", "ingress_memory.py")


def _where(stat: Any, frames: int) -> str:
    """The innermost ``frames`` frames of the allocation, without the event loop's plumbing."""
    lines = []
    for frame in list(reversed(stat.traceback))[:frames]:  # tracemalloc keeps oldest first
        if frame.filename.endswith(_PLUMBING):
            continue
        code = linecache.getline(frame.filename, frame.lineno).strip()
        lines.append(f"{frame.filename}:{frame.lineno}  {code}")
    return "\n        ".join(lines)


def compare(before: dict[str, Any], after: dict[str, Any], top: int, frames: int) -> dict[str, Any]:
    """What grew from ``before`` to ``after``: by site, by traceback, by object type."""
    grown = Counter(after["types"])
    grown.subtract(before["types"])
    result: dict[str, Any] = {
        "from": before["name"],
        "to": after["name"],
        "objects_grown": [(t, n) for t, n in grown.most_common(top) if n > 0],
        "objects_shrunk": [
            (t, n) for t, n in sorted(grown.items(), key=lambda i: i[1])[:5] if n < 0
        ],
    }
    if "snapshot" in before and "snapshot" in after:
        old = tracemalloc.Snapshot.load(before["snapshot"])
        new = tracemalloc.Snapshot.load(after["snapshot"])
        result["by_line"] = [
            f"{s.size_diff / 1024:+9.1f} KiB {s.count_diff:+7d} blocks  "
            f"{s.traceback[0].filename}:{s.traceback[0].lineno}"
            for s in new.compare_to(old, "lineno")[:top]
        ]
        result["by_traceback"] = [
            f"{s.size_diff / 1024:+9.1f} KiB {s.count_diff:+7d} blocks\n        "
            + _where(s, frames)
            for s in new.compare_to(old, "traceback")[:top]
        ]
    return result


ROW = (
    "{name:<22} {rss_mb:>7} {rss_anon_mb:>8} {traced:>8} {arenas:>7} {pyfree:>7} "
    "{gl_use:>7} {gl_free:>7} {objects:>8}  {notes}"
)


def table(points: list[dict[str, Any]]) -> str:
    lines = [
        ROW.format(
            name="point",
            rss_mb="RSS",
            rss_anon_mb="RssAnon",
            traced="traced",
            arenas="arenas",
            pyfree="pyfree",
            gl_use="glibc+",
            gl_free="glibc~",
            objects="objects",
            notes="structures (non-zero)",
        )
    ]
    for p in points:
        notes = f"threads={p['threads']} glibc_arenas={p['glibc_arenas'].get('arenas')} "
        notes += " ".join(f"{k}={v}" for k, v in p["structures"].items() if v)
        lines.append(
            ROW.format(
                name=p["name"],
                rss_mb=p["rss_mb"],
                rss_anon_mb=p["rss_anon_mb"],
                traced=p.get("traced_mb", "-"),
                arenas=p["pymalloc"].get("arenas_mb", "-"),
                pyfree=p["pymalloc"].get("free_in_arenas_mb", "-"),
                gl_use=p["glibc"].get("in_use_mb", "-"),
                gl_free=p["glibc"].get("free_held_mb", "-"),
                objects=p["gc_objects"],
                notes=notes,
            )
        )
        if "trimmed" in p:
            t = p["trimmed"]
            lines.append(
                ROW.format(
                    name="  after malloc_trim",
                    rss_mb=t["rss_mb"],
                    rss_anon_mb=t["rss_anon_mb"],
                    traced="",
                    arenas="",
                    pyfree="",
                    gl_use=t["glibc"].get("in_use_mb", "-"),
                    gl_free=t["glibc"].get("free_held_mb", "-"),
                    objects="",
                    notes="",
                )
            )
    lines.append(
        "(MB; arenas: pymalloc arenas held, pyfree: free space inside them; glibc+: bytes"
        " malloc'd and in use, glibc~: freed but held by glibc, both heap+mmap; traced:"
        " tracemalloc, allocations since start)"
    )
    return "\n".join(lines)


async def measure(mesh: FaultMesh, child: Child, args: argparse.Namespace) -> dict[str, Any]:
    from tools.faults.twilio_sender import TwilioSender

    tenant = await mesh.create_tenant()
    sender = TwilioSender(
        child.port,
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        sender_number=tenant.number,
    )
    points = [await asyncio.to_thread(child.probe, "start")]
    loads: dict[str, Any] = {}
    loads["warm"] = await offer(mesh, sender, args, seconds=args.warm, freeze_s=0, tag="warm")
    await asyncio.sleep(2)
    points.append(await asyncio.to_thread(child.probe, "warm"))
    points.append(await asyncio.to_thread(child.probe, "warm_gc", collect=True))
    for stall in range(1, args.stalls + 1):
        seconds = args.lead + args.freeze + args.tail
        loads[f"stall{stall}"] = await offer(
            mesh, sender, args, seconds=seconds, freeze_s=args.freeze, tag=f"stall{stall}"
        )
        points.append(await asyncio.to_thread(child.probe, f"stall{stall}_end"))
        await mesh.settled(tenant.tenant_id)
        await asyncio.sleep(args.idle)
        points.append(await asyncio.to_thread(child.probe, f"stall{stall}_idle"))
        last = stall == args.stalls
        points.append(
            await asyncio.to_thread(
                child.probe, f"stall{stall}_idle_gc", collect=True, trim=last or args.trim_each
            )
        )
    by_name = {p["name"]: p for p in points}
    pairs = [("start", "warm_gc"), ("warm_gc", "stall1_end"), ("warm_gc", "stall1_idle_gc")]
    pairs += [(f"stall{s - 1}_idle_gc", f"stall{s}_idle_gc") for s in range(2, args.stalls + 1)]
    return {
        "args": vars(args),
        "loads": loads,
        "points": points,
        "comparisons": [
            compare(by_name[a], by_name[b], args.top, args.tb_frames) for a, b in pairs
        ],
    }


def report(result: dict[str, Any]) -> str:
    out = [table(result["points"]), "", "loads: " + json.dumps(result["loads"])]
    for p in result["points"]:
        out.append(f"{p['name']}: highest since the point before {p['peaks_since_last']}")
    for p in result["points"]:
        out.append(f"{p['name']}: pymalloc {p['pymalloc']}  glibc {p['glibc']}  gc {p['gc_count']}")
    for c in result["comparisons"]:
        out += ["", f"== {c['from']} -> {c['to']}", "objects grown:"]
        out += [f"    {n:+8d}  {t}" for t, n in c["objects_grown"]]
        if c["objects_shrunk"]:
            out += ["objects shrunk:"] + [f"    {n:+8d}  {t}" for t, n in c["objects_shrunk"]]
        if "by_line" in c:
            out += ["top growth by line:"] + [f"    {line}" for line in c["by_line"]]
            out += ["top growth by traceback:"] + [f"    {tb}" for tb in c["by_traceback"]]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rate", type=float, default=150.0, help="webhooks per second")
    parser.add_argument("--freeze", type=float, default=10.0, help="seconds Postgres is frozen")
    parser.add_argument("--stalls", type=int, default=2, help="identical stalls, one after another")
    parser.add_argument("--warm", type=float, default=10.0, help="seconds of load, no stall, first")
    parser.add_argument("--lead", type=float, default=3.0, help="seconds of load before a freeze")
    parser.add_argument("--tail", type=float, default=5.0, help="seconds of load after it")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds idle after the drain")
    parser.add_argument("--frames", type=int, default=25, help="tracemalloc traceback depth")
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS figures undisturbed")
    parser.add_argument("--trim-each", action="store_true", help="malloc_trim after every stall")
    parser.add_argument("--top", type=int, default=15, help="entries of each comparison")
    parser.add_argument("--tb-frames", type=int, default=8, help="frames shown per traceback")
    parser.add_argument("--out", type=Path, help="also write every figure here, as JSON")
    # The child's role (internal): serve the measured ingress.
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--tenants-target", help=argparse.SUPPRESS)
    parser.add_argument("--conversations-target", help=argparse.SUPPRESS)
    parser.add_argument("--snapshots", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    from tools.faults.mesh import FaultMesh

    with (
        tempfile.TemporaryDirectory(prefix="wamesh-memory-") as data_dir,
        FaultMesh(Path(data_dir)) as mesh,
    ):
        # One ingress only, the measured one: it alone takes the webhooks and replays the spill.
        mesh.services["ingress"].stop()
        snapshots = Path(data_dir) / "snapshots"
        snapshots.mkdir()
        child = Child(mesh, args, snapshots)
        try:
            result = asyncio.run(measure(mesh, child, args))
        finally:
            child.stop()
        text = report(result)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1, default=str))
        print(text)


if __name__ == "__main__":
    main()
