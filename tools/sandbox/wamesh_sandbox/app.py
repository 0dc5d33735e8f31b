"""The sandbox as one ASGI app: Twilio's Messages API under ``/2010-04-01/``, the admin API
under ``/sandbox/``.

The Messages API is served straight from the ASGI entry, without Starlette's router and
middleware: a benchmark of sending must be limited by the sender, never by its Twilio. The
admin API (inbound messages, faults, the record) is ordinary Starlette.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from wamesh_sandbox import api
from wamesh_sandbox.errors import TwilioError, message_of
from wamesh_sandbox.faults import AdminRefusal, Fault, Faults, named_error
from wamesh_sandbox.record import Message, Record, Webhook, new_sid
from wamesh_sandbox.settings import Account, SandboxSettings
from wamesh_sandbox.webhooks import WebhookSender, is_http_url

log = logging.getLogger(__name__)

_MESSAGES = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages(?:/([^/]+))?\.json")
_RAW_SEND = "wamesh.sandbox.raw_send"


class BehaviourChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status_delay_s: float | None = Field(default=None, ge=0)
    read_receipts: bool | None = None
    out_of_order: bool | None = None
    duplicate: bool | None = None


class Behaviour:
    """How status callbacks go out; changed at run time through ``PUT /sandbox/behaviour``.
    ``out_of_order`` shuffles a message's callbacks and ``duplicate`` repeats some: Twilio
    does both, and a receiver must cope."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.status_delay_s = settings.status_delay_s
        self.read_receipts = settings.read_receipts
        self.out_of_order = False
        self.duplicate = False

    def update(self, changes: object) -> None:
        try:
            valid = BehaviourChange.model_validate(changes)
        except ValidationError as error:
            raise named_error(error) from None
        for name, value in valid.model_dump(exclude_none=True).items():
            setattr(self, name, value)

    def describe(self) -> dict[str, Any]:
        return dict(vars(self))


class Sandbox:
    """The state behind both APIs, and the work that outlives a request (callbacks)."""

    def __init__(self, settings: SandboxSettings, accounts: list[Account]) -> None:
        self.settings = settings
        self.accounts = api.Accounts(accounts)
        self.record = Record(settings.record_path())
        self.faults = Faults()
        self.behaviour = Behaviour(settings)
        # One generator for every random choice (callback order, duplicates, latencies), so
        # a seed replays a run.
        self.random = random.Random(settings.random_seed)
        self.webhooks = WebhookSender(self.record, timeout_s=settings.callback_timeout_s)

    async def aclose(self) -> None:
        await self.webhooks.aclose()
        self.record.close()

    def account_of_sender(self, sender: str) -> Account | None:
        for account in self.accounts.by_sid.values():
            if sender in account.senders:
                return account
        return None

    def window_open(self, message: Message) -> bool:
        seen = self.record.last_inbound.get((message.from_, message.to))
        return seen is not None and time.time() - seen < self.settings.session_window_s

    def deliver(self, message: Message, account: Account, fault: Fault | None) -> None:
        """Walk the message through its statuses, posting each to its StatusCallback."""
        if fault is not None and fault.outcome is not None:
            ending = [("queued", None), (fault.outcome, fault.code)]
        elif message.content_sid is None and not self.window_open(message):
            ending = [("queued", None), ("failed", 63016)]
        else:
            ending = [("queued", None), ("sent", None), ("delivered", None)]
            if self.behaviour.read_receipts:
                ending.append(("read", None))
        self.webhooks.spawn(self._walk(message, account, ending))

    async def _walk(
        self, message: Message, account: Account, steps: list[tuple[str, int | None]]
    ) -> None:
        """Record each status as it is reached and hand its callback to the message's poster
        at once, as Twilio posts them: the record keeps its pace whatever the target does.

        ``out_of_order`` holds a callback back until a later status's has gone (Twilio's
        arrive out of order when an earlier one is slow); ``duplicate`` posts some again once
        the last status is reached."""
        outbox: asyncio.Queue[dict[str, str] | None] | None = None
        if message.status_callback is not None:
            outbox = asyncio.Queue()
            self.webhooks.spawn(self._post_callbacks(message.status_callback, account, outbox))
        held: list[dict[str, str]] = []
        posted: list[dict[str, str]] = []
        try:
            for index, (status, code) in enumerate(steps):
                await asyncio.sleep(self.behaviour.status_delay_s)
                self.record.advance(message, status, time.time(), code)
                if outbox is None:
                    continue
                params = _status_params(message, account, status, code)
                last = index == len(steps) - 1
                if self.behaviour.out_of_order and not last and self.random.random() < 0.5:
                    held.append(params)
                    continue
                self.random.shuffle(held)
                for ready in (params, *held):
                    outbox.put_nowait(ready)
                    posted.append(ready)
                held.clear()
            if outbox is not None and self.behaviour.duplicate:
                for again in self.random.sample(posted, k=max(1, len(posted) // 2)):
                    outbox.put_nowait(again)
        finally:
            if outbox is not None:
                outbox.put_nowait(None)

    async def _post_callbacks(
        self, url: str, account: Account, outbox: asyncio.Queue[dict[str, str] | None]
    ) -> None:
        """One message's callbacks, one at a time in the order handed over: a slow target
        delays only this message's later callbacks, never its statuses or other messages."""
        while (params := await outbox.get()) is not None:
            await self.webhooks.post(
                "status", url, params, account.auth_token, attempts=self.settings.callback_attempts
            )


def _status_params(
    message: Message, account: Account, status: str, code: int | None
) -> dict[str, str]:
    params = {
        "AccountSid": account.sid,
        "ApiVersion": "2010-04-01",
        "ChannelPrefix": "whatsapp",
        "ChannelToAddress": message.to.removeprefix("whatsapp:"),
        "From": message.from_,
        "MessageSid": message.sid,
        "MessageStatus": status,
        "SmsSid": message.sid,
        "SmsStatus": status,
        "StructuredMessage": "false",
        "To": message.to,
    }
    if message.messaging_service_sid:
        params["MessagingServiceSid"] = message.messaging_service_sid
    if code is not None:
        params["ErrorCode"] = str(code)
        params["ErrorMessage"] = message_of(code)
    return params


# -- the Messages API -----------------------------------------------------------------------


class MessagesApi:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = _MESSAGES.fullmatch(scope["path"])
        method = scope["method"]
        try:
            if matched is None:
                raise TwilioError.of(20404, f"The requested resource {scope['path']} was not found")
            account = self._sandbox.accounts.authenticate(
                _header(scope, b"authorization"), matched.group(1)
            )
            sid = matched.group(2)
            if method == "POST" and sid is None:
                await self._create(scope, receive, send, account)
                return
            if method == "GET" and sid is not None:
                body = fetch_body(self._sandbox, account, sid)
                await _json(send, 200, body)
                return
            if method == "GET":
                params = dict(parse_qsl(scope["query_string"].decode(), keep_blank_values=True))
                page = api.list_page(self._sandbox.record, account, params)
                await _json(send, 200, page)
                return
            raise TwilioError.of(20001, f"{method} is not allowed here", status=405)
        except TwilioError as error:
            await _json(send, error.status, error.body())

    async def _create(self, scope: Scope, receive: Receive, send: Send, account: Account) -> None:
        sandbox = self._sandbox
        raw = await _body(receive, sandbox.settings.max_body_bytes)
        request = api.create_request(api.parse_form(raw), account)
        # After validation, so a fault meets only creates Twilio would have taken, scoped by
        # the sender a messaging service resolves to.
        fault = sandbox.faults.take(account.sid, request.from_, request.to)
        if fault is not None:
            await asyncio.sleep(fault.latency_s(sandbox.random))
            if fault.reset == "before":
                await _reset(scope, receive)
                return
            if fault.outcome is None and fault.code is not None and fault.status is not None:
                raise TwilioError.of(fault.code, status=fault.status)
        if (request.from_, request.to) in sandbox.record.opted_out:
            raise TwilioError.of(21610)
        if not sandbox.faults.admitted(account.sid, request.from_):
            raise TwilioError.of(20429)
        message = api.new_message(account, request)
        sandbox.record.add_message(message)
        sandbox.deliver(message, account, fault)
        if fault is not None and fault.reset == "after":
            await _reset(scope, receive)
            return
        await _json(send, 201, message.resource())


def fetch_body(sandbox: Sandbox, account: Account, sid: str) -> dict[str, Any]:
    return api.fetch(sandbox.record, account, sid).resource()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _body(receive: Receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise TwilioError.of(20001, "The client went away before its request arrived")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TwilioError.of(20001, f"The request body is over {limit} bytes", status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _json(send: Send, status: int, body: object) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def _reset(scope: Scope, receive: Receive) -> None:
    """Drop the connection with a TCP reset and no answer.

    ASGI has no way to say "reset": the transport is reached through the server's own send
    callable (uvicorn's request cycle), kept in the scope by :class:`SandboxApp`. Linger 0
    makes close send RST, as a load balancer dropping the call would."""
    raw_send = scope.get(_RAW_SEND)
    transport = getattr(getattr(raw_send, "__self__", None), "transport", None)
    if transport is None:
        raise TwilioError.of(20500, "this server cannot reset connections", status=500)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Return only once the server has seen the connection go (``receive`` then says
    # disconnect): returning first makes uvicorn log "ASGI callable returned without starting
    # response" as an error and write a 500 to the dropped connection.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1):
            while (await receive())["type"] != "http.disconnect":
                pass


# -- the admin API --------------------------------------------------------------------------


def _refusal(error: AdminRefusal) -> JSONResponse:
    return JSONResponse({"error": str(error), "field": error.field}, status_code=400)


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise AdminRefusal("body", "must be JSON") from None


class Admin:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox

    def routes(self) -> list[Route]:
        return [
            Route("/sandbox/healthz", self.healthz, methods=["GET"]),
            Route("/sandbox/inbound", self.inbound, methods=["POST"]),
            Route("/sandbox/messages", self.messages, methods=["GET"]),
            Route("/sandbox/webhooks", self.webhooks, methods=["GET"]),
            Route("/sandbox/faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route("/sandbox/faults/{fault_id:int}", self.remove_fault, methods=["DELETE"]),
            Route("/sandbox/rate-limits", self.rate_limit, methods=["PUT"]),
            Route("/sandbox/behaviour", self.behaviour, methods=["GET", "PUT"]),
            Route("/sandbox/clear", self.clear, methods=["POST"]),
        ]

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def inbound(self, request: Request) -> Response:
        """A customer writes in: the signed webhook Twilio would post, and its answer."""
        try:
            spec = await _json_body(request)
            result = await customer_writes(self._sandbox, spec)
        except AdminRefusal as error:
            return _refusal(error)
        return JSONResponse(result)

    async def messages(self, request: Request) -> Response:
        """What customers received, oldest first (``?to=``, ``?from=``, ``?account_sid=``)."""
        to, from_ = request.query_params.get("to"), request.query_params.get("from")
        account_sid = request.query_params.get("account_sid")
        found = [
            {
                **m.resource(),
                "media_urls": m.media_urls,
                "content_sid": m.content_sid,
                "content_variables": m.content_variables,
                "statuses": m.statuses,
            }
            for m in self._sandbox.record.messages.values()
            if (to is None or m.to == to)
            and (from_ is None or m.from_ == from_)
            and (account_sid is None or m.account_sid == account_sid)
        ]
        return JSONResponse({"messages": found})

    async def webhooks(self, request: Request) -> Response:
        """Every webhook sent, in order (``?kind=status|inbound``, ``?message_sid=``)."""
        kind = request.query_params.get("kind")
        sid = request.query_params.get("message_sid")
        found = [
            asdict(w)
            for w in self._sandbox.record.webhooks
            if (kind is None or w.kind == kind)
            and (sid is None or w.params.get("MessageSid") == sid)
        ]
        return JSONResponse({"webhooks": found})

    async def faults(self, request: Request) -> Response:
        faults = self._sandbox.faults
        if request.method == "POST":
            try:
                fault = faults.add(await _json_body(request))
            except AdminRefusal as error:
                return _refusal(error)
            return JSONResponse(fault.describe(), status_code=201)
        if request.method == "DELETE":
            faults.clear()
        return JSONResponse(faults.describe())

    async def remove_fault(self, request: Request) -> Response:
        if not self._sandbox.faults.remove(request.path_params["fault_id"]):
            return JSONResponse({"error": "no such fault", "field": "fault_id"}, status_code=404)
        return Response(status_code=204)

    async def rate_limit(self, request: Request) -> Response:
        try:
            self._sandbox.faults.limit(await _json_body(request))
        except AdminRefusal as error:
            return _refusal(error)
        return JSONResponse(self._sandbox.faults.describe())

    async def behaviour(self, request: Request) -> Response:
        if request.method == "PUT":
            try:
                self._sandbox.behaviour.update(await _json_body(request))
            except AdminRefusal as error:
                return _refusal(error)
        return JSONResponse(self._sandbox.behaviour.describe())

    async def clear(self, request: Request) -> Response:
        self._sandbox.record.clear()
        self._sandbox.faults.clear()
        return Response(status_code=204)


async def customer_writes(sandbox: Sandbox, spec: object) -> dict[str, Any]:
    """Act as a customer: record the message (window, STOP/START) and post the webhook."""
    if not isinstance(spec, dict):
        raise AdminRefusal("body", "must be a JSON object")
    sender, customer = spec.get("to"), spec.get("from")
    if not isinstance(sender, str) or not api.WHATSAPP_ADDRESS.fullmatch(sender):
        raise AdminRefusal("to", "must be whatsapp:+E164")
    if not isinstance(customer, str) or not api.WHATSAPP_ADDRESS.fullmatch(customer):
        raise AdminRefusal("from", "must be whatsapp:+E164")
    account = sandbox.account_of_sender(sender)
    if account is None:
        raise AdminRefusal("to", "is not a sender of any account this sandbox knows")
    url = spec.get("webhook_url") or account.senders[sender].webhook_url
    if url and (not isinstance(url, str) or not is_http_url(url)):
        raise AdminRefusal("webhook_url", "must be an http(s) URL")
    params = inbound_params(account, sender, customer, spec)
    sandbox.record.saw_inbound(sender, customer, params["Body"], time.time())
    if not url:
        return {"message_sid": params["MessageSid"], "outcome": "not sent", "attempts": []}
    webhook: Webhook = await sandbox.webhooks.post("inbound", str(url), params, account.auth_token)
    return {
        "message_sid": params["MessageSid"],
        "outcome": webhook.outcome,
        "attempts": webhook.attempts,
        "url": webhook.url,
    }


def inbound_params(
    account: Account, sender: str, customer: str, spec: dict[str, Any]
) -> dict[str, str]:
    """Every field Twilio posts for an inbound WhatsApp message."""
    body = spec.get("body", "")
    media = spec.get("media", [])
    if not isinstance(body, str):
        raise AdminRefusal("body", "must be a string")
    if not isinstance(media, list) or not all(
        isinstance(m, dict) and isinstance(m.get("url"), str) for m in media
    ):
        raise AdminRefusal("media", "must be a list of {url, content_type}")
    sid = new_sid("MM" if media else "SM")
    params = {
        "AccountSid": account.sid,
        "ApiVersion": "2010-04-01",
        "Body": body,
        "From": customer,
        "MessageSid": sid,
        "MessageType": "image" if media else "text",
        "NumMedia": str(len(media)),
        "NumSegments": "1",
        "ProfileName": str(spec.get("profile_name", "Sandbox Customer")),
        "ReferralNumMedia": "0",
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "SmsStatus": "received",
        "To": sender,
        "WaId": customer.removeprefix("whatsapp:+"),
    }
    for index, item in enumerate(media):
        params[f"MediaUrl{index}"] = item["url"]
        params[f"MediaContentType{index}"] = str(item.get("content_type", "image/jpeg"))
    return params


# -- the whole app ---------------------------------------------------------------------------


class SandboxApp:
    """The ASGI entry: the Messages API directly, everything else through Starlette."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._messages = MessagesApi(sandbox)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await sandbox.aclose()

        self._admin = Starlette(routes=Admin(sandbox).routes(), lifespan=lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/2010-04-01/"):
            scope[_RAW_SEND] = send
            await self._messages(scope, receive, send)
            return
        await self._admin(scope, receive, send)


def create_app(settings: SandboxSettings, accounts: list[Account]) -> SandboxApp:
    return SandboxApp(Sandbox(settings, accounts))
