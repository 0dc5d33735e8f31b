"""The public door: Twilio's WhatsApp webhooks and status callbacks, over Starlette.

A webhook is answered 200 only once it is durable: stored by the conversation store, or,
while that is down or slow, appended to the spill stream. Every check that can refuse a
request (source-IP budget, size, form, fields, tenant, signature) runs before any write.
Every webhook is answered within ``WAMESH_ANSWER_WITHIN_S`` of its body's arrival: each step
gets what is left of that, less the time a spill may take, so there is always time to spill.

``create_app`` builds :class:`Ingress`, whose bound methods are the endpoints, and
:class:`Front`, the ASGI entry. What the endpoints use while the app runs (clients,
caches, the breaker, the spill) is a :class:`Dependencies`, made by the lifespan. Refusals
are raised where they are found and answered by ``refusals.answer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc.aio
import redis.asyncio as aioredis
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh_ingress import webhooks
from wamesh_ingress.admission import SourceBudget
from wamesh_ingress.breaker import StoreBreaker
from wamesh_ingress.deadline import Deadline
from wamesh_ingress.guard import InboundGuard
from wamesh_ingress.metrics import IngressMetrics
from wamesh_ingress.refusals import (
    REFUSALS,
    BadSignature,
    BodyTooSlow,
    NotAForm,
    OverBudget,
    SpillUnavailable,
    StoreRefused,
    TenantSuspended,
    TenantUnavailable,
    answer,
)
from wamesh_ingress.routing import Routes, TenantRoute
from wamesh_ingress.settings import IngressSettings
from wamesh_ingress.signatures import PublicUrls, signed_by
from wamesh_ingress.spill import Spill, SpillReplayer, Store
from wamesh_kit.alarms import Alarms
from wamesh_kit.batching import Full, GroupCommit
from wamesh_kit.redis_client import make_redis
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.errors import is_infrastructure_error
from wamesh_kit.telemetry import tag_tenant
from wamesh_kit.tenant_invalidations import InvalidationListener

if TYPE_CHECKING:
    from wamesh.conversations.v1.conversations_pb2_grpc import ConversationStoreAsyncStub

log = logging.getLogger(__name__)

TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
# Idempotent on the store side (MessageSid, provider SID): grpc may retry them itself.
_IDEMPOTENT = (
    "/wamesh.conversations.v1.ConversationStore/RecordInbound",
    "/wamesh.conversations.v1.ConversationStore/RecordInboundBatch",
)
# Webhooks waiting for the store behind the batch in flight: two full batches. More means
# the store is stalled rather than busy, and until the breaker opens each would be held
# (its connection, its parsed form) for its whole wait; the rest spill at once.
_STORE_MAX_WAITING = 400

# One answer for every accepted webhook: a Response holds nothing of the request, so there
# is no need to build its headers anew each time.
_TWIML = Response(TWIML_EMPTY, media_type="text/xml")
# Never delivered (uvicorn drops what is sent to a closed connection); 499 as nginx logs it.
_GONE = Response(status_code=499)

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Dependencies:
    """What the endpoints use while the app runs: made by :func:`_running`."""

    redis: aioredis.Redis
    routes: Routes
    guard: InboundGuard
    conversations: ConversationStoreAsyncStub
    tenants_channel: grpc.aio.Channel
    conversations_channel: grpc.aio.Channel
    breaker: StoreBreaker
    spill: Spill
    replayer: SpillReplayer
    batcher: GroupCommit[pb.RecordInboundRequest, pb.RecordInboundResult]
    alarms: Alarms  # every deadline of every webhook, on one coarse timer


class Ingress:
    """The endpoints, each a bound method that its route calls directly."""

    # Set by the lifespan, whose start the server awaits before it takes any request.
    deps: Dependencies

    def __init__(
        self,
        settings: IngressSettings,
        metrics: IngressMetrics,
        urls: PublicUrls,
        registry: CollectorRegistry,
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._urls = urls
        self._registry = registry

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with _running(self._settings, self._metrics) as deps:
            self.deps = deps
            yield

    # -- the webhooks: POST only, answered empty TwiML or by refusals.answer --

    async def whatsapp(self, request: Request) -> Response:
        """``/twilio/whatsapp``: an inbound message, answered once stored or spilled."""
        return await self._answered("whatsapp", self._inbound, request)

    async def status(self, request: Request) -> Response:
        """``/twilio/status``: a status callback, answered once stored or spilled."""
        return await self._answered("status", self._status_callback, request)

    async def _answered(
        self, route: str, handle: Callable[[Request], Awaitable[None]], request: Request
    ) -> Response:
        """Empty TwiML once ``handle`` returns, else the answer to its refusal; either one
        counted and timed under ``route``."""
        started = time.perf_counter()
        try:
            await handle(request)
            response, outcome = _TWIML, "ok"
        except REFUSALS as refusal:
            response = answer(refusal)
            outcome = str(response.status_code)
        except ClientDisconnect:
            # Gone before its body arrived: nothing was read, so nothing is owed to it.
            response, outcome = _GONE, "disconnected"
        self._metrics.answered(route, outcome, time.perf_counter() - started)
        return response

    async def _inbound(self, request: Request) -> None:
        settings, metrics, deps = self._settings, self._metrics, self.deps
        form = await self._form(request)
        received_at = time.time_ns()
        deadline = Deadline(settings.answer_within_s)
        webhook = webhooks.inbound(form)
        sid = webhook.message.message_sid
        route = await self._verified_route(request, form, webhook.sender_number, sid, deadline)
        admission = await deps.guard.admit(
            route.tenant_id,
            sid,
            webhook.customer_number,
            timeout_s=deadline.left(reserve_s=settings.spill_reserve_s),
        )
        if admission.seen_before:
            metrics.repeats.inc()
        rate_limited = admission.inbound_this_minute > route.inbound_per_minute
        if rate_limited and not admission.seen_before:
            metrics.rate_limited.inc()
        store = pb.RecordInboundRequest(
            tenant_id=route.tenant_id, message=webhook.message, rate_limited=rate_limited
        )
        store.received_at.FromNanoseconds(received_at)
        await self._store_inbound(store, deadline)

    async def _status_callback(self, request: Request) -> None:
        form = await self._form(request)
        received_at = time.time_ns()
        deadline = Deadline(self._settings.answer_within_s)
        callback = webhooks.status(form)
        route = await self._verified_route(
            request, form, callback.sender_number, callback.message_sid, deadline
        )
        if callback.status is None:
            return  # e.g. "received": nothing for the store to record
        store = pb.RecordStatusRequest(
            tenant_id=route.tenant_id,
            provider_sid=callback.message_sid,
            account_sid=callback.account_sid,
            status=callback.status,
            error_code=callback.error_code,
            error_message=callback.error_message,
        )
        store.occurred_at.FromNanoseconds(received_at)
        await self._store_status(store, deadline)

    async def _form(self, request: Request) -> webhooks.Form:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != webhooks.FORM_CONTENT_TYPE:
            raise NotAForm(f"body must be {webhooks.FORM_CONTENT_TYPE}")
        settings = self._settings
        body = await _body(
            request, settings.max_body_bytes, settings.body_timeout_s, self.deps.alarms
        )
        return webhooks.parse_form(body)

    async def _verified_route(
        self,
        request: Request,
        form: webhooks.Form,
        sender: str,
        message_sid: str,
        deadline: Deadline,
    ) -> TenantRoute:
        """The route of ``sender``, once ``request`` is signed with its tenant's token.
        An unknown number or a tenant without credentials is refused by ``routes`` itself."""
        try:
            route = await self.deps.routes.resolve(
                sender, timeout_s=deadline.left(reserve_s=self._settings.spill_reserve_s)
            )
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            self._metrics.dependency_errors.labels("tenants").inc()
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "TIMEOUT"
            log.warning("tenant lookup failed", extra={"code": code})
            raise TenantUnavailable from None
        # Named on the span signed or not: a forged webhook is its number's tenant's concern.
        tag_tenant(route.tenant_id)
        if not route.active:
            raise TenantSuspended
        if not signed_by(route.validator, self._urls.of(request), form, request):
            self._metrics.signature_failures.inc()
            log.warning(
                "signature rejected",
                extra={"message_sid": message_sid, "reason": "missing or not matching"},
            )
            raise BadSignature
        return route

    async def _store_inbound(self, request: pb.RecordInboundRequest, deadline: Deadline) -> None:
        """Stored, or spilled once the store failed or ran out of the webhook's time."""
        deps, metrics = self.deps, self._metrics
        wait_s = deadline.left(reserve_s=self._settings.spill_reserve_s)
        if wait_s > 0 and deps.breaker.allows():
            try:
                result = await deps.batcher.submit(request, timeout_s=wait_s)
            except TimeoutError:
                metrics.store_gave_up.inc()
                deps.breaker.failed()
            except Full:
                metrics.store_gave_up.inc()  # too far behind to be in time
            except grpc.aio.AioRpcError as error:
                self._refused_unless_down(error)
            else:
                deps.breaker.succeeded()
                if result.HasField("refusal"):
                    refusal = result.refusal
                    field = f"{refusal.field}: " if refusal.field else ""
                    raise StoreRefused(f"refused by the store: {field}{refusal.message}")
                if result.duplicate:
                    metrics.duplicates.inc()
                return
        await self._spill(request, deadline)

    async def _store_status(self, request: pb.RecordStatusRequest, deadline: Deadline) -> None:
        deps, settings = self.deps, self._settings
        wait_s = min(settings.rpc_timeout_s, deadline.left(reserve_s=settings.spill_reserve_s))
        if wait_s > 0 and deps.breaker.allows():
            try:
                await deps.conversations.RecordStatus(request, timeout=wait_s)
                deps.breaker.succeeded()
                return
            except grpc.aio.AioRpcError as error:
                self._refused_unless_down(error)
        await self._spill(request, deadline)

    def _refused_unless_down(self, error: grpc.aio.AioRpcError) -> None:
        """A refusal is the webhook's fault (400); anything else, the store's (spill it)."""
        if not is_infrastructure_error(error):
            self.deps.breaker.succeeded()
            raise StoreRefused(f"refused by the store: {error.details()}") from None
        self._metrics.dependency_errors.labels("conversations").inc()
        self.deps.breaker.failed()

    async def _spill(self, request: Message, deadline: Deadline) -> None:
        try:
            # At least a moment: a webhook whose time is spent is still worth keeping.
            await self.deps.spill.append(request, timeout_s=max(deadline.left(), 0.05))
        except (RedisError, TimeoutError) as error:
            self._metrics.spill_failures.inc()
            log.error("could not spill a webhook", extra={"error": type(error).__name__})
            raise SpillUnavailable from None
        self._metrics.spilled.inc()
        self.deps.replayer.wake.set()

    # -- the rest, served through Starlette --

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        deps = self.deps
        checks = await asyncio.gather(
            _redis_ready(deps.redis),
            _grpc_ready(deps.tenants_channel),
            _grpc_ready(deps.conversations_channel),
        )
        report = dict(zip(("redis", "tenants", "conversations"), checks, strict=True))
        return JSONResponse(report, status_code=200 if all(checks) else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)


class Front:
    """The ASGI entry: spends the source's budget (429 before any other work), then serves
    the two webhook routes directly; everything else (health, metrics, lifespan, wrong
    methods) goes through Starlette. The webhooks skip Starlette's middleware and router,
    work on the hot path that they do not need: their endpoints answer every error."""

    def __init__(
        self,
        app: ASGIApp,
        webhooks: Mapping[str, Endpoint],
        budget: SourceBudget,
        urls: PublicUrls,
    ) -> None:
        self._app = app
        self._webhooks = webhooks
        self._budget = budget
        self._urls = urls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/twilio/"):
            request = Request(scope, receive)
            wait_s = self._budget.spend(self._urls.client_ip(request))
            if wait_s > 0:
                await answer(OverBudget(wait_s))(scope, receive, send)
                return
            endpoint = self._webhooks.get(scope["path"])
            if endpoint is not None and scope["method"] == "POST":
                response = await endpoint(request)
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def create_app(settings: IngressSettings, *, registry: CollectorRegistry = REGISTRY) -> ASGIApp:
    urls = PublicUrls(settings.public_base_url, settings.trusted_proxies)
    ingress = Ingress(settings, IngressMetrics(registry), urls, registry)
    app = Starlette(
        routes=[
            Route("/twilio/whatsapp", ingress.whatsapp, methods=["POST"]),
            Route("/twilio/status", ingress.status, methods=["POST"]),
            Route("/healthz", ingress.healthz),
            Route("/readyz", ingress.readyz),
            Route("/metrics", ingress.metrics),
        ],
        lifespan=ingress.lifespan,
    )
    budget = SourceBudget(settings.per_ip_requests_per_s, settings.per_ip_burst)
    webhook_endpoints = {"/twilio/whatsapp": ingress.whatsapp, "/twilio/status": ingress.status}
    return Front(app, webhook_endpoints, budget, urls)


@contextlib.asynccontextmanager
async def _running(
    settings: IngressSettings, metrics: IngressMetrics
) -> AsyncIterator[Dependencies]:
    token = settings.internal_token.get_secret_value()
    redis = make_redis(
        settings.redis_url,
        client_name="ingress",
        max_connections=settings.redis_max_connections,
        socket_timeout_s=settings.redis_timeout_s,
        pool_timeout_s=settings.redis_pool_timeout_s,
    )
    tenants_channel = make_channel(
        settings.tenants_target, token=token, default_timeout=settings.rpc_timeout_s
    )
    conversations_channel = make_channel(
        settings.conversations_target,
        token=token,
        idempotent_methods=_IDEMPOTENT,
        default_timeout=settings.rpc_timeout_s,
    )
    conversations = conversations_pb2_grpc.ConversationStoreStub(conversations_channel)
    routes = Routes(
        tenants_channel, timeout_s=settings.rpc_timeout_s, ttl_s=settings.route_cache_ttl_s
    )
    alarms = Alarms()
    breaker = StoreBreaker(settings.store_retry_after_s, probe_timeout_s=settings.answer_within_s)
    deps = Dependencies(
        redis=redis,
        routes=routes,
        guard=InboundGuard(redis, dedup_ttl_s=settings.dedup_ttl_s, alarms=alarms),
        conversations=conversations,
        tenants_channel=tenants_channel,
        conversations_channel=conversations_channel,
        breaker=breaker,
        spill=Spill(redis, alarms=alarms),
        replayer=SpillReplayer(
            redis,
            _replay_to(conversations, settings.rpc_timeout_s),
            # Longer than a replayed store call may last: see SpillReplayer.
            lease_ms=int(max(10.0, 3 * settings.rpc_timeout_s) * 1000),
        ),
        batcher=GroupCommit(
            _record_inbound_batch(conversations, settings.rpc_timeout_s),
            max_waiting=_STORE_MAX_WAITING,
            alarms=alarms,
        ),
        alarms=alarms,
    )
    metrics.store_breaker_open.set_function(lambda: float(breaker.is_open))
    listener = InvalidationListener(redis, routes.invalidate, routes.reset)
    stop = asyncio.Event()
    replaying = asyncio.create_task(deps.replayer.run(stop), name="spill-replayer")
    await listener.start()
    _log_twilio_setup(settings)
    try:
        yield deps
    finally:
        stop.set()
        await replaying
        await listener.stop()
        await tenants_channel.close(None)
        await conversations_channel.close(None)
        await redis.aclose()


def _record_inbound_batch(
    conversations: ConversationStoreAsyncStub, timeout_s: float
) -> Callable[[list[pb.RecordInboundRequest]], Awaitable[Sequence[pb.RecordInboundResult]]]:
    """Concurrent webhooks go to the store as one RecordInboundBatch: gRPC's cost per call
    is paid once for all of them."""

    async def send(requests: list[pb.RecordInboundRequest]) -> Sequence[pb.RecordInboundResult]:
        response = await conversations.RecordInboundBatch(
            pb.RecordInboundBatchRequest(requests=requests), timeout=timeout_s
        )
        return list(response.results)

    return send


def _replay_to(conversations: ConversationStoreAsyncStub, timeout_s: float) -> Store:
    """How the replayer stores a spilled request."""

    async def replay(request: Message) -> None:
        if isinstance(request, pb.RecordInboundRequest):
            await conversations.RecordInbound(request, timeout=timeout_s)
        elif isinstance(request, pb.RecordStatusRequest):
            await conversations.RecordStatus(request, timeout=timeout_s)
        else:  # spill reads back only the two kinds it is given
            raise TypeError(f"cannot replay a {type(request).__name__}")

    return replay


async def _redis_ready(redis: aioredis.Redis) -> bool:
    try:
        return bool(await redis.ping())
    except RedisError:
        return False


async def _grpc_ready(channel: grpc.aio.Channel) -> bool:
    stub: Any = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
    except grpc.aio.AioRpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


async def _body(request: Request, limit: int, timeout_s: float, alarms: Alarms) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise NotAForm(f"body larger than {limit} bytes")
    task = asyncio.current_task()
    if task is None:  # the alarm cancels the task that reads: there must be one
        raise RuntimeError("a request body is read by a task")
    chunks, size = [], 0
    late = False

    def too_late() -> None:
        nonlocal late
        late = True
        task.cancel()

    alarm = alarms.set(timeout_s, too_late)
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise NotAForm(f"body larger than {limit} bytes")
            chunks.append(chunk)
    except asyncio.CancelledError:
        if not late:
            raise
        task.uncancel()
        raise BodyTooSlow(f"body not received within {timeout_s:g} s") from None
    finally:
        alarms.clear(alarm)
    return b"".join(chunks)


def _log_twilio_setup(settings: IngressSettings) -> None:
    base = settings.public_base_url or f"https://<public host of {settings.http_listen}>"
    log.info(
        "configure Twilio: WhatsApp sender 'A message comes in' = %s/twilio/whatsapp#rc=3&rp=all "
        "(the #rc/rp fragment makes Twilio retry 5xx and timeouts, not only failed "
        "connections), and each message's StatusCallback = %s/twilio/status; the URL must be "
        "exactly the public one, since signatures are checked against it",
        base,
        base,
    )
