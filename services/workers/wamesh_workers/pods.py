"""The pod watch: a worker is lost as soon as its pod is deleted or stops being ready.

Workers register with their pod's name as ``instance_id``, so when the API server says a
worker's pod went the registry need not wait for the worker's lease to lapse
(``WAMESH_K8S_WATCH=true``). :class:`PodWatch` lists and watches the pods carrying the
worker label, as a reflector does:

* it LISTs first and reports the pods already not ready, then WATCHes from the list's
  ``resourceVersion``, carrying the newest one it saw (BOOKMARKs included) into the next
  watch, so nothing between two watches is missed;
* on 410 Gone (the history it would resume from is compacted) it relists at once, and
  reports the pods that vanished between the two lists as deleted;
* on any other failure it backs off (capped, exponential) and relists; a watch the server
  ends at once, without an event, is resumed after the same backoff. It never raises.

A pod is reported once per going: when it is DELETED, or when an event shows it not ready
(no Ready=True condition, a ``deletionTimestamp``, or phase Failed/Succeeded). It is not
reported again for later events while it stays gone, only once it has been ready again.

The ``kubernetes`` client is synchronous, so the list/watch loop runs in a thread of its own
and hands what it finds to the asyncio loop, where ``on_gone`` is awaited in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.watch
from kubernetes.client import CoreV1Api, V1Pod
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

GoneCallback = Callable[[str, str], Awaitable[None]]

# The reasons handed to on_gone.
DELETED = "deleted"
TERMINATING = "terminating"
NOT_READY = "not-ready"

_GONE_STATUS = 410
_CONNECT_TIMEOUT_S = 5.0
_LIST_TIMEOUT_S = 30.0
# Past the server's own watch timeout, so only a server gone silent trips it.
_WATCH_READ_GRACE_S = 15.0
# How often stopping re-interrupts the thread: a watch request that started just after an
# interrupt would otherwise run to its server timeout.
_INTERRUPT_EVERY_S = 0.1


class _WatchFailed(Exception):
    """A failure the watch found itself (not the client's); its message fits a log line."""


class _Expired(_WatchFailed):
    """The watch's resourceVersion is older than the server keeps: relist."""


class _EndedEarly(_WatchFailed):
    """The server ended the watch at once, without an event: resume, after a backoff."""


@dataclass(frozen=True)
class _Pod:
    name: str
    gone_reason: str | None  # None while ready


def _gone_reason(pod: V1Pod) -> str | None:
    if pod.metadata is not None and pod.metadata.deletion_timestamp is not None:
        return TERMINATING
    status = pod.status
    if status is not None and status.phase in ("Failed", "Succeeded"):
        return status.phase.lower()
    conditions = (status.conditions if status is not None else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    return None if ready else NOT_READY


def _pod(pod: V1Pod) -> _Pod | None:
    name = pod.metadata.name if pod.metadata is not None else None
    return _Pod(name, _gone_reason(pod)) if name else None


class _PodStates:
    """Which pods were seen and which were already reported, so each going is reported once."""

    def __init__(self) -> None:
        self._ready: set[str] = set()
        self._reported: set[str] = set()

    def observe(self, pod: _Pod) -> str | None:
        """The reason to report ``pod`` now, or None."""
        if pod.gone_reason is None:
            self._reported.discard(pod.name)
            self._ready.add(pod.name)
            return None
        self._ready.discard(pod.name)
        if pod.name in self._reported:
            return None
        self._reported.add(pod.name)
        return pod.gone_reason

    def deleted(self, name: str) -> str | None:
        self._ready.discard(name)
        if name in self._reported:
            self._reported.discard(name)
            return None
        return DELETED

    def resync(self, pods: list[_Pod]) -> list[tuple[str, str]]:
        """What to report after a list: listed pods not ready, and known pods not listed
        (deleted while nobody watched)."""
        listed = {pod.name for pod in pods}
        vanished = (self._ready | self._reported) - listed
        found = [(name, reason) for name in sorted(vanished) if (reason := self.deleted(name))]
        for pod in pods:
            if (reason := self.observe(pod)) is not None:
                found.append((pod.name, reason))
        return found


def _describe(error: BaseException) -> str:
    # An ApiException's str() carries the response's headers and body: status and reason are
    # what a log line needs.
    if isinstance(error, ApiException):
        return f"HTTP {error.status}: {error.reason}"
    if isinstance(error, _WatchFailed):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _is_expired(error: BaseException) -> bool:
    return isinstance(error, _Expired) or (
        isinstance(error, ApiException) and error.status == _GONE_STATUS
    )


def _event_resource_version(raw: Any) -> str | None:
    metadata = raw.get("metadata") if isinstance(raw, dict) else None
    version = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    return version if isinstance(version, str) and version else None


class _Session:
    """One run's list/watch loop, on its own thread; ``report`` is called from that thread."""

    def __init__(self, config: PodWatch, report: Callable[[str, str], None]) -> None:
        self._config = config
        self._report = report
        self._states = _PodStates()
        self.halt = threading.Event()
        self._watch: Any = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]

    def interrupt(self) -> None:
        """Ask the loop to end, unblocking a watch read in progress (safe from any thread)."""
        self.halt.set()
        self._watch.stop()

    def main(self, ended: Callable[[], None]) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("pod watch thread failed")
        finally:
            ended()

    def _loop(self) -> None:
        first, most = self._config.backoff_s
        delay = first
        resource_version: str | None = None
        expired_before = False
        while not self.halt.is_set():
            try:
                if resource_version is None:
                    resource_version = self._relist()
                resource_version = self._watch_once(resource_version)
                delay, expired_before = first, False
            except Exception as error:
                if self.halt.is_set():
                    return
                if not isinstance(error, _EndedEarly):
                    resource_version = None
                expired = _is_expired(error)
                if expired and not expired_before:
                    expired_before = True
                    log.info("pod watch expired, relisting", extra={"error": _describe(error)})
                    continue
                expired_before = expired
                log.warning(
                    "pod watch failed, retrying",
                    extra={"error": _describe(error), "retry_in_s": delay},
                )
                self.halt.wait(delay)
                delay = min(delay * 2, most)

    def _relist(self) -> str:
        config = self._config
        listed = config.api.list_namespaced_pod(
            config.namespace,
            label_selector=config.label_selector,
            _request_timeout=(_CONNECT_TIMEOUT_S, _LIST_TIMEOUT_S),
        )
        version = listed.metadata.resource_version if listed.metadata is not None else None
        if not version:
            raise _WatchFailed("pod list without a resourceVersion")
        pods = [pod for item in listed.items if (pod := _pod(item)) is not None]
        for name, reason in self._states.resync(pods):
            self._gone(name, reason)
        log.info("pods listed", extra={"pods": len(pods), "resource_version": version})
        return version

    def _watch_once(self, resource_version: str) -> str:
        """Watch until the server ends the watch; the resourceVersion to resume from."""
        if self.halt.is_set():
            return resource_version
        started = time.monotonic()
        events_seen = False
        with self._opened(resource_version) as events:
            for event in events:
                # The client yields None for a blank or unparsable line.
                if not isinstance(event, dict):
                    continue
                events_seen = True
                resource_version = self._handle(event) or resource_version
                if self.halt.is_set():
                    return resource_version
        # A server (or proxy) that ends every watch at once would otherwise be hammered.
        if not events_seen and time.monotonic() - started < self._config.watch_timeout_s / 2:
            raise _EndedEarly("watch ended early")
        return resource_version

    @contextlib.contextmanager
    def _opened(self, resource_version: str) -> Iterator[Iterator[Any]]:
        config = self._config
        stream: Any = self._watch.stream(
            config.api.list_namespaced_pod,
            config.namespace,
            label_selector=config.label_selector,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=config.watch_timeout_s,
            _request_timeout=(_CONNECT_TIMEOUT_S, config.watch_timeout_s + _WATCH_READ_GRACE_S),
        )
        try:
            yield stream
        finally:
            # Releases the response (and its connection) now, not when the generator is
            # collected.
            stream.close()

    def _handle(self, event: Any) -> str | None:
        """Report what ``event`` says; the resourceVersion it carries."""
        kind = event.get("type")
        raw = event.get("raw_object")
        if kind == "ERROR":
            # This client raises ApiException for ERROR events when the watch has a timeout;
            # other versions yield them.
            code = raw.get("code") if isinstance(raw, dict) else None
            if code == _GONE_STATUS:
                raise _Expired("watch expired (410)")
            raise _WatchFailed(f"watch error event: {code}")
        version = _event_resource_version(raw)
        pod_object = event.get("object")
        if kind == "BOOKMARK" or not isinstance(pod_object, V1Pod):
            return version
        pod = _pod(pod_object)
        if pod is None:
            return version
        reason = self._states.deleted(pod.name) if kind == "DELETED" else self._states.observe(pod)
        if reason is not None:
            self._gone(pod.name, reason)
        return version

    def _gone(self, name: str, reason: str) -> None:
        log.info("worker pod gone", extra={"pod": name, "reason": reason})
        self._report(name, reason)


class PodWatch:
    """Calls ``on_gone(pod_name, reason)`` for each pod matching ``label_selector`` in
    ``namespace`` that goes, until the ``stop`` given to :meth:`run` is set.

    ``api`` is the caller's; the watch does not close it. ``watch_timeout_s`` is the server
    timeout of each watch request: the watch resumes from where it was after each.
    """

    def __init__(
        self,
        api: CoreV1Api,
        namespace: str,
        label_selector: str,
        on_gone: GoneCallback,
        *,
        watch_timeout_s: int = 60,
        backoff_s: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.label_selector = label_selector
        self.on_gone = on_gone
        self.watch_timeout_s = watch_timeout_s
        self.backoff_s = backoff_s

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set (or this is cancelled); returns once the thread ended."""
        loop = asyncio.get_running_loop()
        gone: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        ended = asyncio.Event()
        session = _Session(self, lambda name, reason: _post(loop, gone.put_nowait, (name, reason)))
        thread = threading.Thread(
            target=session.main,
            args=(lambda: _post(loop, ended.set),),
            name="wamesh-pod-watch",
            daemon=True,
        )
        log.info(
            "pod watch starting",
            extra={"namespace": self.namespace, "label_selector": self.label_selector},
        )
        thread.start()
        delivering = asyncio.create_task(self._deliver(gone))
        try:
            await stop.wait()
        finally:
            delivering.cancel()
            await asyncio.wait([delivering])
            await _halt(session, ended)
            thread.join()
            log.info("pod watch stopped")

    async def _deliver(self, gone: asyncio.Queue[tuple[str, str]]) -> None:
        delivering = asyncio.current_task()
        while True:
            name, reason = await gone.get()
            try:
                await self.on_gone(name, reason)
            except Exception:
                log.exception("pod gone handler failed", extra={"pod": name, "reason": reason})
            # The handler may have swallowed the cancel that stops this task: redis-py sends
            # through asyncio.wait_for, which on Python 3.11 returns instead of raising when a
            # cancel lands just as the send completes. The task is then still cancelling but
            # no longer told so, and would wait here for a pod event that never comes.
            if delivering is not None and delivering.cancelling():
                raise asyncio.CancelledError


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., object], *args: Any) -> None:
    # The loop may be closed when the thread ends after an abandoned run.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


async def _halt(session: _Session, ended: asyncio.Event) -> None:
    while not ended.is_set():
        session.interrupt()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_INTERRUPT_EVERY_S):
                await ended.wait()


def pod_api(in_cluster: bool = True, config_file: str | None = None) -> CoreV1Api:
    """A ``CoreV1Api`` with the pod's service account (``in_cluster``) or a kube config
    (``config_file``, else ``$KUBECONFIG`` or ``~/.kube/config``); the global default
    configuration is left alone."""
    configuration = kubernetes.client.Configuration()
    if in_cluster:
        kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    else:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=config_file, client_configuration=configuration
        )
    return CoreV1Api(kubernetes.client.ApiClient(configuration))
