"""A stand-in for the Kubernetes API, for the pod watch's tests: pods only, one resource.

It speaks the list/watch protocol the real client relies on: ``GET
/api/v1/namespaces/{ns}/pods`` answers a ``PodList`` whose ``metadata.resourceVersion`` says
where to watch from; with ``watch=true`` it streams newline-delimited JSON events (chunked)
for the changes after ``resourceVersion`` and ends after ``timeoutSeconds``, with a BOOKMARK
last when ``allowWatchBookmarks`` is set. A watch from a resourceVersion older than the
history it keeps (see :meth:`KubeStandIn.compact`) gets what an API server sends then: an
ERROR event carrying a ``Status`` with ``code: 410, reason: Expired`` (or, with
``expire_with="status"``, an HTTP 410 before any event, as some servers answer; open watches
then just end).

The state lives in :class:`KubeStandIn`, the server in :meth:`KubeStandIn.serving`, so a test
can stop the server and start it again on the same port with the pods it had, as an API
server restarting over the same etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import kubernetes.client
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Json = dict[str, Any]
_CREATED = "2024-01-01T00:00:00Z"


@dataclass
class _Pod:
    namespace: str
    name: str
    labels: dict[str, str]
    ready: bool = True
    phase: str = "Running"
    terminating: bool = False
    resource_version: int = 0

    def manifest(self) -> Json:
        metadata: Json = {
            "name": self.name,
            "namespace": self.namespace,
            "uid": f"uid-{self.namespace}-{self.name}",
            "labels": dict(self.labels),
            "resourceVersion": str(self.resource_version),
            "creationTimestamp": _CREATED,
        }
        if self.terminating:
            metadata["deletionTimestamp"] = _CREATED
        ready = "True" if self.ready else "False"
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"containers": [{"name": "worker", "image": "wamesh-workers"}]},
            "status": {"phase": self.phase, "conditions": [{"type": "Ready", "status": ready}]},
        }


@dataclass(frozen=True)
class _Change:
    resource_version: int
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    namespace: str
    labels: dict[str, str]
    manifest: Json


@dataclass(frozen=True)
class WatchRequest:
    """What one watch asked for, for tests that check where the client resumed from."""

    resource_version: str | None
    timeout_seconds: int | None
    bookmarks: bool


@dataclass
class KubeStandIn:
    expire_with: Literal["event", "status"] = "event"
    # How long each list takes to answer, for tests that act while one is in flight.
    list_delay_s: float = 0.0
    lists: int = 0
    watches: list[WatchRequest] = field(default_factory=list)
    expired: int = 0
    open_watches: int = 0
    _pods: dict[tuple[str, str], _Pod] = field(default_factory=dict)
    _history: list[_Change] = field(default_factory=list)
    _resource_version: int = 1
    _oldest_watchable: int = 1
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False

    # --- what tests do to the cluster

    def add_pod(
        self, name: str, labels: dict[str, str], ready: bool = True, namespace: str = "default"
    ) -> None:
        pod = _Pod(namespace, name, dict(labels), ready=ready)
        self._pods[(namespace, name)] = pod
        self._record("ADDED", pod)

    def set_ready(self, name: str, ready: bool, namespace: str = "default") -> None:
        pod = self._pods[(namespace, name)]
        pod.ready = ready
        self._record("MODIFIED", pod)

    def set_phase(self, name: str, phase: str, namespace: str = "default") -> None:
        pod = self._pods[(namespace, name)]
        pod.phase, pod.ready = phase, False
        self._record("MODIFIED", pod)

    def terminate(self, name: str, namespace: str = "default") -> None:
        """The first half of a graceful delete: ``deletionTimestamp`` set, pod still there."""
        pod = self._pods[(namespace, name)]
        pod.terminating = True
        self._record("MODIFIED", pod)

    def delete_pod(self, name: str, namespace: str = "default") -> None:
        pod = self._pods.pop((namespace, name))
        self._record("DELETED", pod)

    def compact(self) -> None:
        """Forget the history: any watch from a resourceVersion handed out so far gets 410,
        open ones included, as after an etcd compaction that outran them."""
        self._resource_version += 1
        self._oldest_watchable = self._resource_version
        self._history.clear()
        self._wake()

    def _record(self, kind: Literal["ADDED", "MODIFIED", "DELETED"], pod: _Pod) -> None:
        self._resource_version += 1
        pod.resource_version = self._resource_version
        self._history.append(
            _Change(self._resource_version, kind, pod.namespace, dict(pod.labels), pod.manifest())
        )
        self._wake()

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        return self._resource_version

    def _wake(self) -> None:
        # Everything runs on the test's loop: swapping the event is enough to wake watchers.
        self._changed.set()
        self._changed = asyncio.Event()

    # --- the API

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/v1/namespaces/{namespace}/pods", self._pods_route)])

    async def _pods_route(self, request: Request) -> Response:
        namespace = request.path_params["namespace"]
        query = request.query_params
        try:
            selector = _parse_selector(query.get("labelSelector", ""))
        except ValueError as error:
            return _status(400, "BadRequest", str(error))
        if query.get("watch") not in ("true", "1"):
            self.lists += 1
            if self.list_delay_s:
                await asyncio.sleep(self.list_delay_s)
            return JSONResponse(self._pod_list(namespace, selector))
        since = query.get("resourceVersion") or None
        timeout = int(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
        bookmarks = query.get("allowWatchBookmarks") == "true"
        self.watches.append(WatchRequest(since, timeout, bookmarks))
        expired = since is not None and int(since) < self._oldest_watchable
        if expired and self.expire_with == "status":
            self.expired += 1
            return _status(410, "Expired", self._too_old(str(since)))
        events = self._events(namespace, selector, since, timeout or 1800, bookmarks)
        return StreamingResponse(events, media_type="application/json")

    def _pod_list(self, namespace: str, selector: list[_Requirement]) -> Json:
        pods = [pod for pod in self._pods.values() if pod.namespace == namespace]
        return {
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": str(self._resource_version)},
            "items": [
                {k: v for k, v in pod.manifest().items() if k not in ("apiVersion", "kind")}
                for pod in pods
                if _matches(selector, pod.labels)
            ],
        }

    async def _events(
        self,
        namespace: str,
        selector: list[_Requirement],
        since: str | None,
        timeout_s: int,
        bookmarks: bool,
    ) -> AsyncIterator[bytes]:
        self.open_watches += 1
        try:
            async for event in self._event_objects(namespace, selector, since, timeout_s):
                if event["type"] != "BOOKMARK" or bookmarks:
                    yield json.dumps(event).encode() + b"\n"
        finally:
            self.open_watches -= 1

    async def _event_objects(
        self, namespace: str, selector: list[_Requirement], since: str | None, timeout_s: int
    ) -> AsyncIterator[Json]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if since is None:
            # No resourceVersion: "from now", starting with the current objects as ADDED.
            for pod in list(self._pods.values()):
                if pod.namespace == namespace and _matches(selector, pod.labels):
                    yield {"type": "ADDED", "object": pod.manifest()}
        cursor = int(since) if since is not None else self._resource_version
        while not self._closing:
            if cursor < self._oldest_watchable:
                if self.expire_with == "event":
                    yield {"type": "ERROR", "object": self._expired_status(str(cursor))}
                # Else just end: the client's next watch gets the HTTP 410.
                return
            for change in [c for c in self._history if c.resource_version > cursor]:
                cursor = change.resource_version
                if change.namespace == namespace and _matches(selector, change.labels):
                    yield {"type": change.type, "object": change.manifest}
            remaining = deadline - loop.time()
            if remaining <= 0:
                # As an API server does near a watch's end, so the client resumes from here
                # rather than from its last event.
                yield _bookmark(self._resource_version)
                return
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    def _too_old(self, since: str) -> str:
        return f"too old resource version: {since} ({self._oldest_watchable})"

    def _expired_status(self, since: str) -> Json:
        self.expired += 1
        return _status_object(410, "Expired", self._too_old(since))

    # --- the server

    @contextlib.asynccontextmanager
    async def serving(self, port: int = 0) -> AsyncIterator[str]:
        """The API under uvicorn on loopback (``port`` 0: any free one); yields its base URL."""
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._closing = False
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        bound: int = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{bound}"
        finally:
            # Open watches end first, so uvicorn is not left waiting on them to shut down.
            self._closing = True
            self._wake()
            server.should_exit = True
            await serving


_Requirement = tuple[str, str, bool]  # key, value, equal


def _parse_selector(selector: str) -> list[_Requirement]:
    """Equality selectors only (``a=b``, ``a==b``, ``a!=b``, comma-separated): what the
    watch uses; anything else is refused rather than silently matched."""
    requirements: list[_Requirement] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        for operator, equal in (("!=", False), ("==", True), ("=", True)):
            key, found, value = term.partition(operator)
            if found:
                requirements.append((key.strip(), value.strip(), equal))
                break
        else:
            raise ValueError(f"unsupported label selector term: {term!r}")
    return requirements


def _matches(selector: list[_Requirement], labels: dict[str, str]) -> bool:
    return all((labels.get(key) == value) == equal for key, value, equal in selector)


def _bookmark(resource_version: int) -> Json:
    return {
        "type": "BOOKMARK",
        "object": {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(resource_version)},
        },
    }


def _status_object(code: int, reason: str, message: str) -> Json:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _status(code: int, reason: str, message: str) -> JSONResponse:
    return JSONResponse(_status_object(code, reason, message), status_code=code)


@contextlib.contextmanager
def core_api(url: str) -> Iterator[kubernetes.client.CoreV1Api]:
    """A real ``CoreV1Api`` on the stand-in (plain HTTP, no credentials); closed after."""
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    api_client = kubernetes.client.ApiClient(configuration)
    try:
        yield kubernetes.client.CoreV1Api(api_client)
    finally:
        # Not ApiClient.close(): that stops only the thread pool of async_req calls, while the
        # pooled connections belong to the REST client.
        api_client.rest_client.close()
