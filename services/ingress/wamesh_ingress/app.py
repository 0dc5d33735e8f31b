"""The public door: Twilio's WhatsApp webhooks and status callbacks, over Starlette.

A webhook is answered 200 only once it is durable: stored by the conversation store, or,
while that is down or slow, appended to the spill stream. Every check that can refuse a
request (source-IP budget, size, form, fields, tenant, signature) runs before any write.
Every webhook is answered within ``WAMESH_ANSWER_WITHIN_S`` of its body's arrival: each step
gets what is left of that, less the time a spill may take, so there is always time to spill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import redis.asyncio as aioredis
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
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
from wamesh_ingress.routing import NoCredentials, Routes, TenantRoute, UnknownNumber
from wamesh_ingress.settings import IngressSettings
from wamesh_ingress.signatures import PublicUrls, signed_by
from wamesh_ingress.spill import Spill, SpillReplayer
from wamesh_kit.alarms import Alarms
from wamesh_kit.batching import Full, GroupCommit
from wamesh_kit.redis_client import make_redis
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.errors import is_infrastructure_error
from wamesh_kit.tenant_invalidations import InvalidationListener

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


class IngressMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "wamesh_ingress_requests",
            "Requests by route and outcome",
            ["route", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "wamesh_ingress_request_seconds",
            "Time to answer, by route",
            ["route"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
            registry=registry,
        )
        self.signature_failures = Counter(
            "wamesh_ingress_signature_failures",
            "Requests refused for their signature",
            registry=registry,
        )
        self.duplicates = Counter(
            "wamesh_ingress_duplicates",
            "Webhooks whose MessageSid the store already held",
            registry=registry,
        )
        self.repeats = Counter(
            "wamesh_ingress_repeats",
            "Webhooks whose MessageSid was seen before (sent to the store again, not counted"
            " against the rate again)",
            registry=registry,
        )
        self.rate_limited = Counter(
            "wamesh_ingress_rate_limited",
            "Inbound messages over the customer's limit",
            registry=registry,
        )
        self.dependency_errors = Counter(
            "wamesh_ingress_dependency_errors",
            "Failed calls, by dependency",
            ["dependency"],
            registry=registry,
        )
        self.spilled = Counter(
            "wamesh_ingress_spilled", "Webhooks kept in the spill stream", registry=registry
        )
        self.spill_failures = Counter(
            "wamesh_ingress_spill_failures",
            "Webhooks the store did not take and the spill could not keep (answered 503)",
            registry=registry,
        )
        self.store_breaker_open = Gauge(
            "wamesh_ingress_store_breaker_open",
            "1 while webhooks spill without trying the store (it failed a moment ago)",
            registry=registry,
        )
        self.store_gave_up = Counter(
            "wamesh_ingress_store_gave_up",
            "Webhooks spilled because the store had not answered in their time",
            registry=registry,
        )


class Refused(Exception):
    """Answer the request with ``status`` and ``reason`` (no secrets, no message bodies)."""

    def __init__(self, status: int, reason: str, *, close: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.close = close  # end the connection too (a client too slow to send its body)


@dataclass
class Ingress:
    settings: IngressSettings
    metrics: IngressMetrics
    urls: PublicUrls
    redis: aioredis.Redis
    routes: Routes
    guard: InboundGuard
    conversations: Any  # ConversationStoreStub
    tenants_channel: grpc.aio.Channel
    conversations_channel: grpc.aio.Channel
    alarms: Alarms
    breaker: StoreBreaker
    spill: Spill
    replayer: SpillReplayer
    batcher: GroupCommit[pb.RecordInboundRequest, pb.RecordInboundResult]

    async def whatsapp(self, request: Request) -> Response:
        form = await self._form(request)
        received_at = time.time_ns()
        deadline = Deadline(self.settings.answer_within_s)
        webhook = webhooks.inbound(form)
        sid = webhook.message.message_sid
        route = await self._verified_route(request, form, webhook.sender_number, sid, deadline)
        admission = await self.guard.admit(
            route.tenant_id,
            sid,
            webhook.customer_number,
            timeout_s=deadline.left(reserve_s=self.settings.spill_reserve_s),
        )
        if admission.seen_before:
            self.metrics.repeats.inc()
        rate_limited = admission.inbound_this_minute > route.inbound_per_minute
        if rate_limited and not admission.seen_before:
            self.metrics.rate_limited.inc()
        store = pb.RecordInboundRequest(
            tenant_id=route.tenant_id, message=webhook.message, rate_limited=rate_limited
        )
        store.received_at.FromNanoseconds(received_at)
        await self._store_inbound(store, deadline)
        return _twiml()

    async def status(self, request: Request) -> Response:
        form = await self._form(request)
        received_at = time.time_ns()
        deadline = Deadline(self.settings.answer_within_s)
        callback = webhooks.status(form)
        route = await self._verified_route(
            request, form, callback.sender_number, callback.message_sid, deadline
        )
        if callback.status is None:
            return _twiml()  # e.g. "received": nothing for the store to record
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
        return _twiml()

    async def _store_inbound(self, request: pb.RecordInboundRequest, deadline: Deadline) -> None:
        """Stored, or spilled once the store failed or ran out of the webhook's time."""
        wait_s = deadline.left(reserve_s=self.settings.spill_reserve_s)
        if wait_s > 0 and self.breaker.allows():
            try:
                result = await self.batcher.submit(request, timeout_s=wait_s)
            except TimeoutError:
                self.metrics.store_gave_up.inc()
                self.breaker.failed()
            except Full:
                self.metrics.store_gave_up.inc()  # too far behind to be in time
            except grpc.aio.AioRpcError as error:
                self._refused_unless_down(error)
            else:
                self.breaker.succeeded()
                if result.HasField("refusal"):
                    refusal = result.refusal
                    field = f"{refusal.field}: " if refusal.field else ""
                    raise Refused(400, f"refused by the store: {field}{refusal.message}")
                if result.duplicate:
                    self.metrics.duplicates.inc()
                return
        await self._spill(request, deadline)

    async def _store_status(self, request: pb.RecordStatusRequest, deadline: Deadline) -> None:
        wait_s = min(
            self.settings.rpc_timeout_s, deadline.left(reserve_s=self.settings.spill_reserve_s)
        )
        if wait_s > 0 and self.breaker.allows():
            try:
                await self.conversations.RecordStatus(request, timeout=wait_s)
                self.breaker.succeeded()
                return
            except grpc.aio.AioRpcError as error:
                self._refused_unless_down(error)
        await self._spill(request, deadline)

    def _refused_unless_down(self, error: grpc.aio.AioRpcError) -> None:
        """A refusal is the webhook's fault (400); anything else, the store's (spill it)."""
        if not is_infrastructure_error(error):
            self.breaker.succeeded()
            raise Refused(400, f"refused by the store: {error.details()}") from None
        self.metrics.dependency_errors.labels("conversations").inc()
        self.breaker.failed()

    async def _spill(self, request: Message, deadline: Deadline) -> None:
        try:
            # At least a moment: a webhook whose time is spent is still worth keeping.
            await self.spill.append(request, timeout_s=max(deadline.left(), 0.05))
        except (RedisError, TimeoutError) as error:
            self.metrics.spill_failures.inc()
            log.error("could not spill a webhook", extra={"error": type(error).__name__})
            raise Refused(503, "store and spill both unavailable") from None
        self.metrics.spilled.inc()
        self.replayer.wake.set()

    async def replay(self, request: Message) -> None:
        """Store a spilled request (the replayer's hand)."""
        timeout = self.settings.rpc_timeout_s
        if isinstance(request, pb.RecordInboundRequest):
            await self.conversations.RecordInbound(request, timeout=timeout)
        else:
            await self.conversations.RecordStatus(request, timeout=timeout)

    async def _form(self, request: Request) -> webhooks.Form:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != webhooks.FORM_CONTENT_TYPE:
            raise Refused(400, f"body must be {webhooks.FORM_CONTENT_TYPE}")
        body = await _body(
            request, self.settings.max_body_bytes, self.settings.body_timeout_s, self.alarms
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
        try:
            route = await self.routes.resolve(
                sender, timeout_s=deadline.left(reserve_s=self.settings.spill_reserve_s)
            )
        except UnknownNumber:
            raise Refused(404, "no tenant has this number") from None
        except NoCredentials:
            raise Refused(403, "the tenant has no Twilio credentials to check with") from None
        except (grpc.aio.AioRpcError, TimeoutError) as error:
            self.metrics.dependency_errors.labels("tenants").inc()
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "TIMEOUT"
            log.warning("tenant lookup failed", extra={"code": code})
            raise Refused(503, "tenant registry unavailable") from None
        if not route.active:
            raise Refused(403, "tenant suspended")
        if not signed_by(route.validator, self.urls.of(request), form, request):
            self.metrics.signature_failures.inc()
            log.warning(
                "signature rejected",
                extra={"message_sid": message_sid, "reason": "missing or not matching"},
            )
            raise Refused(403, "signature does not match")
        return route

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        checks = await asyncio.gather(
            self._redis_ready(),
            _grpc_ready(self.tenants_channel),
            _grpc_ready(self.conversations_channel),
        )
        report = dict(zip(("redis", "tenants", "conversations"), checks, strict=True))
        return JSONResponse(report, status_code=200 if all(checks) else 503)

    async def _redis_ready(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except RedisError:
            return False


def _record_inbound_batch(
    conversations: Any, timeout_s: float
) -> Callable[[list[pb.RecordInboundRequest]], Awaitable[Sequence[pb.RecordInboundResult]]]:
    """Concurrent webhooks go to the store as one RecordInboundBatch: per call, gRPC costs
    more than the write itself."""

    async def send(requests: list[pb.RecordInboundRequest]) -> Sequence[pb.RecordInboundResult]:
        response = await conversations.RecordInboundBatch(
            pb.RecordInboundBatchRequest(requests=requests), timeout=timeout_s
        )
        return list(response.results)

    return send


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
        raise Refused(400, f"body larger than {limit} bytes")
    chunks, size = [], 0
    task = asyncio.current_task()
    assert task is not None
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
                raise Refused(400, f"body larger than {limit} bytes")
            chunks.append(chunk)
    except asyncio.CancelledError:
        if not late:
            raise
        task.uncancel()
        raise Refused(408, f"body not received within {timeout_s:g} s", close=True) from None
    finally:
        alarms.clear(alarm)
    return b"".join(chunks)


# One answer for every accepted webhook: a Response holds nothing of the request, so there
# is no need to build its headers anew each time.
_TWIML_RESPONSE = Response(TWIML_EMPTY, media_type="text/xml")


def _twiml() -> Response:
    return _TWIML_RESPONSE


# Never delivered (uvicorn drops what is sent to a closed connection); 499 as nginx logs it.
_GONE = Response(status_code=499)


def _endpoint(
    name: str, handler: Callable[[Request], Awaitable[Response]], metrics: IngressMetrics
) -> Callable[[Request], Awaitable[Response]]:
    """The handler with errors turned into answers and every answer counted and timed."""

    async def endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            response = await handler(request)
            outcome = "ok"
        except Refused as refusal:
            headers = {"Connection": "close"} if refusal.close else None
            response = PlainTextResponse(
                refusal.reason, status_code=refusal.status, headers=headers
            )
            outcome = str(refusal.status)
        except webhooks.WebhookError as error:
            response = PlainTextResponse(str(error), status_code=400)
            outcome = "400"
        except ClientDisconnect:
            # Gone before its body arrived: nothing was read, so nothing is owed to it.
            response = _GONE
            outcome = "disconnected"
        metrics.requests.labels(name, outcome).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response

    return endpoint


class Front:
    """The ASGI entry: spends the source's budget (429 before any other work), then serves
    the two webhook routes directly; everything else (health, metrics, lifespan, wrong
    methods) goes through Starlette. The webhooks skip Starlette's middleware and router,
    a tenth of the ingress's time, since their handler already answers every error."""

    def __init__(
        self,
        app: ASGIApp,
        webhooks: Mapping[str, Callable[[Request], Awaitable[Response]]],
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
                response: Response = PlainTextResponse(
                    "too many requests",
                    status_code=429,
                    headers={"Retry-After": str(max(1, round(wait_s)))},
                )
                await response(scope, receive, send)
                return
            handler = self._webhooks.get(scope["path"])
            if handler is not None and scope["method"] == "POST":
                response = await handler(request)
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def create_app(settings: IngressSettings, *, registry: CollectorRegistry = REGISTRY) -> ASGIApp:
    metrics = IngressMetrics(registry)
    urls = PublicUrls(settings.public_base_url, settings.trusted_proxies)
    state: dict[str, Ingress] = {}

    def delegate(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def call(request: Request) -> Response:
            handler: Callable[[Request], Awaitable[Response]] = getattr(state["ingress"], name)
            return await handler(request)

        return call

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with _running(settings, metrics, urls) as ingress:
            state["ingress"] = ingress
            yield

    webhook_routes = {
        "/twilio/whatsapp": _endpoint("whatsapp", delegate("whatsapp"), metrics),
        "/twilio/status": _endpoint("status", delegate("status"), metrics),
    }
    app = Starlette(
        routes=[
            *(Route(path, handler, methods=["POST"]) for path, handler in webhook_routes.items()),
            Route("/healthz", delegate("healthz")),
            Route("/readyz", delegate("readyz")),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    budget = SourceBudget(settings.per_ip_requests_per_s, settings.per_ip_burst)
    return Front(app, webhook_routes, budget, urls)


@contextlib.asynccontextmanager
async def _running(
    settings: IngressSettings, metrics: IngressMetrics, urls: PublicUrls
) -> AsyncIterator[Ingress]:
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
    alarms = Alarms()  # every deadline of every webhook, on one coarse timer
    ingress = Ingress(
        settings=settings,
        metrics=metrics,
        urls=urls,
        alarms=alarms,
        redis=redis,
        routes=routes,
        guard=InboundGuard(redis, dedup_ttl_s=settings.dedup_ttl_s, alarms=alarms),
        conversations=conversations,
        tenants_channel=tenants_channel,
        conversations_channel=conversations_channel,
        breaker=StoreBreaker(
            settings.store_retry_after_s, probe_timeout_s=settings.answer_within_s
        ),
        spill=Spill(redis, alarms=alarms),
        replayer=SpillReplayer(
            redis,
            lambda request: ingress.replay(request),
            # Longer than a replayed store call may last: see SpillReplayer.
            lease_ms=int(max(10.0, 3 * settings.rpc_timeout_s) * 1000),
        ),
        batcher=GroupCommit(
            _record_inbound_batch(conversations, settings.rpc_timeout_s),
            max_waiting=_STORE_MAX_WAITING,
            alarms=alarms,
        ),
    )
    metrics.store_breaker_open.set_function(lambda: float(ingress.breaker.is_open))
    listener = InvalidationListener(redis, routes.invalidate, routes.reset)
    stop = asyncio.Event()
    replaying = asyncio.create_task(ingress.replayer.run(stop), name="spill-replayer")
    await listener.start()
    _log_twilio_setup(settings)
    try:
        yield ingress
    finally:
        stop.set()
        await replaying
        await listener.stop()
        await tenants_channel.close(None)
        await conversations_channel.close(None)
        await redis.aclose()


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
