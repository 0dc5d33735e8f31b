"""The sandbox under a real uvicorn on loopback, the accounts the tests use, and a receiver
of the webhooks it sends (a real HTTP server that keeps what it got)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from wamesh_sandbox.app import SandboxApp, create_app
from wamesh_sandbox.settings import Account, SandboxSettings, Sender, dev_account

SENDER = "whatsapp:+14155238886"
OTHER_SENDER = "whatsapp:+14155230000"
CUSTOMER = "whatsapp:+15550001111"
CONTENT_SID = "HX" + "a" * 32
SERVICE_SID = "MG" + "b" * 32
KEY_SID, KEY_SECRET = "SK" + "c" * 32, "key-secret"
ACCOUNT = Account(
    sid="AC" + "1" * 32,
    auth_token="token-one",
    api_keys={KEY_SID: KEY_SECRET},
    senders={SENDER: Sender(SENDER), OTHER_SENDER: Sender(OTHER_SENDER)},
    messaging_services={SERVICE_SID: (OTHER_SENDER,)},
    content_sids=frozenset({CONTENT_SID}),
)
T = TypeVar("T")
SECOND = Account(sid="AC" + "2" * 32, auth_token="token-two")


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[int]:
    """``app`` under uvicorn (httptools, as ``wamesh dev sandbox`` runs it); yields its port."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        http="httptools",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    port: int = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await serving


@dataclass
class Running:
    url: str
    app: SandboxApp


@contextlib.asynccontextmanager
async def running_sandbox(
    accounts: list[Account] | None = None, **overrides: Any
) -> AsyncIterator[Running]:
    settings = SandboxSettings(**{"status_delay_s": 0.0, "callback_timeout_s": 2.0, **overrides})
    app = create_app(settings, accounts or [ACCOUNT, SECOND, dev_account()])
    async with serve(app) as port:
        yield Running(f"http://127.0.0.1:{port}", app)


@dataclass
class Received:
    url: str
    headers: dict[str, str]
    form: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass
class Receiver:
    """Answers each POST with the next of ``answers`` (then 200) and keeps what it got."""

    answers: list[int] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def endpoint(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        self.got.append(Received(str(request.url), dict(request.headers), form, time.monotonic()))
        self.arrived.set()
        status = self.answers.pop(0) if self.answers else 200
        return Response(
            '<?xml version="1.0" encoding="UTF-8"?><Response/>', status, media_type="text/xml"
        )

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout_s: float = 10
    ) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate(self.got):
                self.arrived.clear()
                await self.arrived.wait()


async def eventually(check: Callable[[], T | None], timeout_s: float = 10) -> T:
    """``check()`` once it is not None: for state the sandbox's background work changes."""
    async with asyncio.timeout(timeout_s):
        # Polled: the state has no event to wait on.
        while (found := check()) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    return found


@contextlib.asynccontextmanager
async def receiver(answers: list[int] | None = None) -> AsyncIterator[tuple[str, Receiver]]:
    """A real webhook target; yields its base URL and what it received."""
    keeper = Receiver(list(answers or []))
    app = Starlette(routes=[Route("/{path:path}", keeper.endpoint, methods=["POST"])])
    async with serve(app) as port:
        yield f"http://127.0.0.1:{port}", keeper


@dataclass
class Hung:
    """A webhook target that accepts connections, reads them and never answers."""

    url: str
    connections: int = 0
    open: int = 0


@contextlib.asynccontextmanager
async def hung_target() -> AsyncIterator[Hung]:
    writers: set[asyncio.StreamWriter] = set()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hung.connections += 1
        hung.open += 1
        writers.add(writer)
        try:
            await reader.read()  # until the sandbox gives up on it and closes
        finally:
            hung.open -= 1
            writers.discard(writer)
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hung = Hung(f"http://127.0.0.1:{port}")
    try:
        yield hung
    finally:
        server.close()
        for writer in list(writers):
            writer.close()
        await server.wait_closed()
