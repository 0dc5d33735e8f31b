"""The public door: Twilio's WhatsApp webhooks and status callbacks, over Starlette.

A webhook is answered 200 only once it is durable: stored by the conversation store, or,
while that is down, appended to the spill stream. Every check that can refuse a request
(source-IP budget, size, form, fields, tenant, signature) runs before any write.
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
    Histogram,
    generate_latest,
)
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh.libs.batching import GroupCommit
from wamesh.libs.redis_client import make_redis
from wamesh.libs.rpc.client import make_channel
from wamesh.libs.rpc.errors import is_infrastructure_error
from wamesh.libs.tenant_invalidations import InvalidationListener
from wamesh.services.ingress import webhooks
from wamesh.services.ingress.admission import SourceBudget
from wamesh.services.ingress.guard import InboundGuard
from wamesh.services.ingress.routing import NoCredentials, Routes, TenantRoute, UnknownNumber
from wamesh.services.ingress.settings import IngressSettings
from wamesh.services.ingress.signatures import PublicUrls, signed_by
from wamesh.services.ingress.spill import SpillReplayer, spill

log = logging.getLogger(__name__)

TWIML_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
# Idempotent on the store side (MessageSid, provider SID): grpc may retry them itself.
_IDEMPOTENT = (
    "/wamesh.conversations.v1.ConversationStore/RecordInbound",
    "/wamesh.conversations.v1.ConversationStore/RecordInboundBatch",
)


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
            "Webhooks whose MessageSid was already stored",
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


class StoreRefusal(Exception):
    """The store refused one webhook of a batch (what RecordInbound would have refused)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)


class Refused(Exception):
    """Answer the request with ``status`` and ``reason`` (no secrets, no message bodies)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


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
    replayer: SpillReplayer
    batcher: GroupCommit[pb.RecordInboundRequest, pb.RecordInboundResult]

    async def whatsapp(self, request: Request) -> Response:
        received_at = time.time_ns()
        form = await self._form(request)
        webhook = webhooks.inbound(form)
        sid = webhook.message.message_sid
        route = await self._verified_route(request, form, webhook.sender_number, sid)
        admission = await self.guard.admit(route.tenant_id, sid, webhook.customer_number)
        if admission.duplicate:
            self.metrics.duplicates.inc()
            return _twiml()
        rate_limited = admission.inbound_this_minute > route.inbound_per_minute
        if rate_limited:
            self.metrics.rate_limited.inc()
        store = pb.RecordInboundRequest(
            tenant_id=route.tenant_id, message=webhook.message, rate_limited=rate_limited
        )
        store.received_at.FromNanoseconds(received_at)
        await self._store(store, route.tenant_id, sid, self._record_batched)
        return _twiml()

    async def status(self, request: Request) -> Response:
        received_at = time.time_ns()
        form = await self._form(request)
        callback = webhooks.status(form)
        route = await self._verified_route(
            request, form, callback.sender_number, callback.message_sid
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
        await self._store(store, route.tenant_id, None, self._record_status)
        return _twiml()

    async def _record_batched(self, request: Message) -> None:
        assert isinstance(request, pb.RecordInboundRequest)
        result = await self.batcher.submit(request)
        if result.HasField("refusal"):
            raise StoreRefusal(result.refusal.message, result.refusal.field)

    async def _record_inbound(self, request: Message) -> None:
        await self.conversations.RecordInbound(request, timeout=self.settings.rpc_timeout_s)

    async def _record_status(self, request: Message) -> None:
        await self.conversations.RecordStatus(request, timeout=self.settings.rpc_timeout_s)

    async def replay(self, request: Message) -> None:
        """Store a spilled request (the replayer's hand)."""
        if isinstance(request, pb.RecordInboundRequest):
            await self._record_inbound(request)
        else:
            await self._record_status(request)

    async def _store(
        self,
        request: Message,
        tenant_id: str,
        message_sid: str | None,
        record: Callable[[Message], Awaitable[None]],
    ) -> None:
        try:
            await record(request)
        except StoreRefusal as refusal:
            if message_sid:
                await self.guard.forget(tenant_id, message_sid)
            raise Refused(400, f"refused by the store: {refusal}") from None
        except grpc.aio.AioRpcError as error:
            if not is_infrastructure_error(error):
                if message_sid:
                    await self.guard.forget(tenant_id, message_sid)
                raise Refused(400, f"refused by the store: {error.details()}") from None
            self.metrics.dependency_errors.labels("conversations").inc()
            if not await spill(self.redis, request):
                if message_sid:
                    await self.guard.forget(tenant_id, message_sid)
                raise Refused(503, "store and spill both unavailable") from None
            self.metrics.spilled.inc()
            self.replayer.wake.set()

    async def _form(self, request: Request) -> webhooks.Form:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != webhooks.FORM_CONTENT_TYPE:
            raise Refused(400, f"body must be {webhooks.FORM_CONTENT_TYPE}")
        body = await _body(request, self.settings.max_body_bytes)
        return webhooks.parse_form(body)

    async def _verified_route(
        self, request: Request, form: webhooks.Form, sender: str, message_sid: str
    ) -> TenantRoute:
        try:
            route = await self.routes.resolve(sender)
        except UnknownNumber:
            raise Refused(404, "no tenant has this number") from None
        except NoCredentials:
            raise Refused(403, "the tenant has no Twilio credentials to check with") from None
        except grpc.aio.AioRpcError as error:
            self.metrics.dependency_errors.labels("tenants").inc()
            log.warning("tenant lookup failed", extra={"code": error.code().name})
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


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Refused(400, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Refused(400, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# One answer for every accepted webhook: a Response holds nothing of the request, so there
# is no need to build its headers anew each time.
_TWIML_RESPONSE = Response(TWIML_EMPTY, media_type="text/xml")


def _twiml() -> Response:
    return _TWIML_RESPONSE


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
            response = PlainTextResponse(refusal.reason, status_code=refusal.status)
            outcome = str(refusal.status)
        except webhooks.WebhookError as error:
            response = PlainTextResponse(str(error), status_code=400)
            outcome = "400"
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
    redis = make_redis(settings.redis_url, client_name="ingress", socket_timeout_s=1.0)
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
    ingress = Ingress(
        settings=settings,
        metrics=metrics,
        urls=urls,
        redis=redis,
        routes=routes,
        guard=InboundGuard(redis, dedup_ttl_s=settings.dedup_ttl_s),
        conversations=conversations,
        tenants_channel=tenants_channel,
        conversations_channel=conversations_channel,
        replayer=SpillReplayer(redis, lambda request: ingress.replay(request)),
        batcher=GroupCommit(_record_inbound_batch(conversations, settings.rpc_timeout_s)),
    )
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
