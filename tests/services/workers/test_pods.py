"""The pod watch, driven by the real ``kubernetes`` client against the list/watch stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import pytest
from kubernetes.config import ConfigException

from tests.services.workers.k8s_standin import KubeStandIn, core_api
from wamesh_workers.pods import DELETED, NOT_READY, TERMINATING, PodWatch, pod_api

T = TypeVar("T")
LABELS = {"app.kubernetes.io/name": "wamesh-workers", "app.kubernetes.io/component": "worker"}
SELECTOR = "app.kubernetes.io/name=wamesh-workers,app.kubernetes.io/component=worker"
THREAD = "wamesh-pod-watch"
_sentinels = itertools.count()


async def eventually(check: Callable[[], T | None], timeout_s: float = 10) -> T:
    async with asyncio.timeout(timeout_s):
        # Polled: the watch's thread changes the state, with no event to wait on.
        while (found := check()) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return found


@dataclass
class Recorder:
    calls: list[tuple[str, str]] = field(default_factory=list)
    fail_first: int = 0

    async def __call__(self, name: str, reason: str) -> None:
        self.calls.append((name, reason))
        if len(self.calls) <= self.fail_first:
            raise RuntimeError("handler failed")

    async def reached(self, expected: list[tuple[str, str]]) -> None:
        """Until the calls are ``expected``; fails at once on a call not in it."""

        def check() -> bool | None:
            assert self.calls == expected[: len(self.calls)], self.calls
            return True if self.calls == expected else None

        await eventually(check)


@dataclass
class Watching:
    gone: Recorder
    task: asyncio.Task[None]
    stop: asyncio.Event


@pytest.fixture
def standin() -> KubeStandIn:
    return KubeStandIn()


@contextlib.asynccontextmanager
async def watching(
    url: str, *, watch_timeout_s: int = 30, fail_first: int = 0
) -> AsyncIterator[Watching]:
    with core_api(url) as api:
        gone = Recorder(fail_first=fail_first)
        stop = asyncio.Event()
        watch = PodWatch(
            api, "default", SELECTOR, gone, watch_timeout_s=watch_timeout_s, backoff_s=(0.05, 0.2)
        )
        task = asyncio.create_task(watch.run(stop))
        try:
            yield Watching(gone, task, stop)
        finally:
            stop.set()
            async with asyncio.timeout(10):
                await task
    assert not _watch_threads()


def _watch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == THREAD]


async def watch_open(standin: KubeStandIn) -> None:
    """Until a watch request is streaming."""
    await eventually(lambda: True if standin.open_watches else None)


async def sentinel(standin: KubeStandIn, gone: Recorder) -> tuple[str, str]:
    """A pod added and deleted, reported once it went: every event before it was handled."""
    name = f"sentinel-{next(_sentinels)}"
    standin.add_pod(name, LABELS)
    standin.delete_pod(name)
    await eventually(lambda: True if (name, DELETED) in gone.calls else None)
    return (name, DELETED)


async def test_a_deleted_pod_is_reported_once(standin: KubeStandIn) -> None:
    standin.add_pod("worker-a", LABELS)
    standin.add_pod("worker-b", LABELS)
    async with standin.serving() as url, watching(url) as watch:
        await watch_open(standin)
        standin.delete_pod("worker-a")
        await watch.gone.reached([("worker-a", DELETED)])
        last = await sentinel(standin, watch.gone)
        assert watch.gone.calls == [("worker-a", DELETED), last]


async def test_a_pod_that_stops_being_ready_is_reported_once(standin: KubeStandIn) -> None:
    standin.add_pod("worker-a", LABELS)
    async with standin.serving() as url, watching(url) as watch:
        await watch_open(standin)
        standin.set_ready("worker-a", False)
        await watch.gone.reached([("worker-a", NOT_READY)])
        # Later news of the same going is not a new going.
        standin.set_ready("worker-a", False)
        standin.terminate("worker-a")
        standin.set_phase("worker-a", "Failed")
        standin.delete_pod("worker-a")
        last = await sentinel(standin, watch.gone)
        assert watch.gone.calls == [("worker-a", NOT_READY), last]


async def test_a_pod_ready_again_is_reported_when_it_goes_again(standin: KubeStandIn) -> None:
    standin.add_pod("worker-a", LABELS)
    async with standin.serving() as url, watching(url) as watch:
        await watch_open(standin)
        standin.set_ready("worker-a", False)
        await watch.gone.reached([("worker-a", NOT_READY)])
        standin.set_ready("worker-a", True)
        standin.delete_pod("worker-a")
        await watch.gone.reached([("worker-a", NOT_READY), ("worker-a", DELETED)])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda standin: standin.terminate("worker-a"), TERMINATING),
        (lambda standin: standin.set_phase("worker-a", "Failed"), "failed"),
        (lambda standin: standin.set_phase("worker-a", "Succeeded"), "succeeded"),
    ],
    ids=["terminating", "failed", "succeeded"],
)
async def test_the_reason_says_how_the_pod_went(
    standin: KubeStandIn, change: Callable[[KubeStandIn], None], reason: str
) -> None:
    standin.add_pod("worker-a", LABELS)
    async with standin.serving() as url, watching(url) as watch:
        await watch_open(standin)
        change(standin)
        await watch.gone.reached([("worker-a", reason)])


async def test_a_pod_not_ready_at_the_first_list_is_reported(standin: KubeStandIn) -> None:
    standin.add_pod("worker-starting", LABELS, ready=False)
    standin.add_pod("worker-ready", LABELS)
    async with standin.serving() as url, watching(url) as watch:
        await watch.gone.reached([("worker-starting", NOT_READY)])
        await watch_open(standin)
        last = await sentinel(standin, watch.gone)
        assert watch.gone.calls == [("worker-starting", NOT_READY), last]


async def test_pods_without_the_worker_labels_are_ignored(standin: KubeStandIn) -> None:
    standin.add_pod("web", {"app.kubernetes.io/name": "wamesh-ingress"})
    standin.add_pod("half", {"app.kubernetes.io/name": "wamesh-workers"}, ready=False)
    standin.add_pod("elsewhere", LABELS, namespace="other")
    async with standin.serving() as url, watching(url) as watch:
        await watch_open(standin)
        standin.set_ready("web", False)
        standin.delete_pod("half")
        standin.delete_pod("elsewhere", namespace="other")
        last = await sentinel(standin, watch.gone)
        assert watch.gone.calls == [last]


@pytest.mark.parametrize("expire_with", ["event", "status"])
async def test_an_expired_watch_relists_and_reports_pods_deleted_in_the_gap(
    expire_with: Literal["event", "status"],
) -> None:
    standin = KubeStandIn(expire_with=expire_with)
    standin.add_pod("worker-a", LABELS)
    standin.add_pod("worker-b", LABELS)
    async with standin.serving() as url, watching(url) as watch:
        await watch_open(standin)
        # Together, so the deletion is in no history the watch can resume from.
        standin.delete_pod("worker-b")
        standin.compact()
        await watch.gone.reached([("worker-b", DELETED)])
        assert standin.expired >= 1
        assert standin.lists == 2
        # Watching again, from the new list.
        standin.delete_pod("worker-a")
        await watch.gone.reached([("worker-b", DELETED), ("worker-a", DELETED)])


async def test_bookmarks_move_where_the_next_watch_resumes(standin: KubeStandIn) -> None:
    standin.add_pod("worker-a", LABELS)
    async with standin.serving() as url, watching(url, watch_timeout_s=1) as watch:
        await watch_open(standin)
        listed = standin.watches[0].resource_version
        # Changes the watch does not see: only a bookmark tells it the history moved on.
        standin.add_pod("web", {"app": "web"})
        standin.set_ready("web", False)
        newest = str(standin.resource_version)
        assert listed != newest
        await eventually(
            lambda: True if any(w.resource_version == newest for w in standin.watches) else None
        )
        assert all(w.bookmarks and w.timeout_seconds == 1 for w in standin.watches)
        assert standin.lists == 1
        assert watch.gone.calls == []


async def test_the_watch_outlives_the_api_and_catches_up_when_it_is_back(
    standin: KubeStandIn, unused_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wamesh_workers.pods")
    standin.add_pod("worker-a", LABELS)
    standin.add_pod("worker-b", LABELS)
    async with watching(f"http://127.0.0.1:{unused_tcp_port}") as watch:
        async with standin.serving(unused_tcp_port):
            await watch_open(standin)
        caplog.clear()
        await eventually(lambda: True if "pod watch failed, retrying" in caplog.messages else None)
        # Gone while the API is away: only the list after it is back can tell.
        standin.delete_pod("worker-b")
        assert not watch.task.done()

        async with standin.serving(unused_tcp_port):
            await watch.gone.reached([("worker-b", DELETED)])
            await watch_open(standin)
            standin.delete_pod("worker-a")
            await watch.gone.reached([("worker-b", DELETED), ("worker-a", DELETED)])


@pytest.mark.parametrize("how", ["stop", "cancel"])
async def test_stopping_returns_and_ends_the_thread(
    standin: KubeStandIn, how: Literal["stop", "cancel"]
) -> None:
    async with standin.serving() as url:
        with core_api(url) as api:
            stop = asyncio.Event()
            # A server timeout far past the test's: stopping must not wait for it.
            watch = PodWatch(api, "default", SELECTOR, Recorder(), watch_timeout_s=3600)
            task = asyncio.create_task(watch.run(stop))
            await watch_open(standin)
            if how == "stop":
                stop.set()
            else:
                task.cancel()
            async with asyncio.timeout(10):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            assert not _watch_threads()
            # The server saw the watch's connection go.
            await eventually(lambda: True if standin.open_watches == 0 else None)


async def test_stopping_while_backing_off_returns(unused_tcp_port: int) -> None:
    with core_api(f"http://127.0.0.1:{unused_tcp_port}") as api:
        stop = asyncio.Event()
        watch = PodWatch(api, "default", SELECTOR, Recorder(), backoff_s=(3600, 3600))
        task = asyncio.create_task(watch.run(stop))
        await eventually(lambda: True if _watch_threads() else None)
        stop.set()
        async with asyncio.timeout(10):
            await task
        assert not _watch_threads()


async def test_stopping_while_a_relist_is_in_flight_returns(standin: KubeStandIn) -> None:
    standin.add_pod("worker-a", LABELS)
    async with standin.serving() as url:
        with core_api(url) as api:
            stop = asyncio.Event()
            watch = PodWatch(api, "default", SELECTOR, Recorder(), watch_timeout_s=3600)
            task = asyncio.create_task(watch.run(stop))
            await watch_open(standin)
            standin.list_delay_s = 1.0
            standin.compact()
            await eventually(lambda: True if standin.lists == 2 else None)
            stop.set()
            async with asyncio.timeout(10):
                await task
            assert not _watch_threads()


async def test_stopping_while_the_handler_swallows_the_cancel_returns(
    standin: KubeStandIn,
) -> None:
    handling = asyncio.Event()

    async def swallowing(name: str, reason: str) -> None:
        handling.set()
        # As a Redis write does on Python 3.11 when the cancel lands as it completes.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    standin.add_pod("worker-a", LABELS)
    async with standin.serving() as url:
        with core_api(url) as api:
            stop = asyncio.Event()
            watch = PodWatch(api, "default", SELECTOR, swallowing)
            task = asyncio.create_task(watch.run(stop))
            await watch_open(standin)
            standin.delete_pod("worker-a")
            async with asyncio.timeout(10):
                await handling.wait()
            stop.set()
            async with asyncio.timeout(10):
                await task
            assert not _watch_threads()


async def test_a_failing_handler_does_not_stop_the_reports(standin: KubeStandIn) -> None:
    standin.add_pod("worker-a", LABELS)
    standin.add_pod("worker-b", LABELS)
    async with standin.serving() as url, watching(url, fail_first=1) as watch:
        await watch_open(standin)
        standin.delete_pod("worker-a")
        standin.delete_pod("worker-b")
        await watch.gone.reached([("worker-a", DELETED), ("worker-b", DELETED)])


async def test_pod_api_reads_a_kube_config(standin: KubeStandIn, tmp_path: Path) -> None:
    standin.add_pod("worker-a", LABELS)
    async with standin.serving() as url:
        kube_config = tmp_path / "config"
        kube_config.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: standin\n"
            f"clusters: [{{name: standin, cluster: {{server: '{url}'}}}}]\n"
            "users: [{name: tester, user: {}}]\n"
            "contexts: [{name: standin, context: {cluster: standin, user: tester}}]\n"
        )
        api = pod_api(in_cluster=False, config_file=str(kube_config))
        try:
            pods = await asyncio.to_thread(api.list_namespaced_pod, "default")
        finally:
            api.api_client.rest_client.close()
        assert [pod.metadata.name for pod in pods.items if pod.metadata] == ["worker-a"]


def test_pod_api_in_cluster_needs_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigException):
        pod_api(in_cluster=True)
