"""Helpers of the ingress tests: a running mesh (tenants, conversations, ingress) and Twilio's
own signing (the twilio library's RequestValidator, as Twilio computes it)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator

from tools.faults.twilio_sender import inbound_form
from wamesh.conversations.v1 import conversations_pb2 as conversations_pb
from wamesh.tenants.v1 import tenants_pb2 as tenants_pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_conversations.settings import ConversationsSettings
from wamesh_ingress.app import create_app
from wamesh_ingress.settings import IngressSettings
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN
from wamesh_tenants.settings import TenantsSettings

CREDENTIAL_KEYS = "k1:" + base64.b64encode(os.urandom(32)).decode()
Params = Sequence[tuple[str, str]]


def tenants_settings(database_url: str, redis_url: str, **overrides: Any) -> TenantsSettings:
    return TenantsSettings(
        grpc_listen="127.0.0.1:0",
        metrics_listen="",
        database_url=database_url,
        redis_url=redis_url,
        credential_keys=SecretStr(CREDENTIAL_KEYS),
        credential_active_key="k1",
        shutdown_grace_s=0,
        **overrides,
    )


def conversations_settings(
    database_url: str, redis_url: str, **overrides: Any
) -> ConversationsSettings:
    values: dict[str, Any] = {
        "grpc_listen": "127.0.0.1:0",
        "metrics_listen": "",
        "database_url": database_url,
        "redis_url": redis_url,
        "shutdown_grace_s": 0,
        "outbox_poll_s": 0.05,
        **overrides,
    }
    return ConversationsSettings(**values)


@contextlib.asynccontextmanager
async def serve_ingress(
    settings: IngressSettings,
    registry: CollectorRegistry | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[int]:
    """The ingress app under a real uvicorn on 127.0.0.1; yields its port. With a
    ``tracer_provider``, each request opens a server span, as ``wamesh serve ingress`` does
    when traces are exported (``wamesh_kit.telemetry.instrument_asgi``)."""
    app = create_app(settings, registry=registry or CollectorRegistry())
    if tracer_provider is not None:
        app = OpenTelemetryMiddleware(app, tracer_provider=tracer_provider)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        proxy_headers=False,
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


@contextlib.asynccontextmanager
async def ingress_client(
    settings: IngressSettings,
    registry: CollectorRegistry | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of an ingress served with ``settings`` (see :func:`serve_ingress`)."""
    async with (
        serve_ingress(settings, registry, tracer_provider=tracer_provider) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
    ):
        yield client


@dataclass(frozen=True)
class Tenant:
    id: str
    number: str
    auth_token: str
    account_sid: str


async def create_tenant(
    tenants_port: int, *, inbound_per_minute: int = 20, account_sid: str | None = None
) -> Tenant:
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    number = "+1444" + str(secrets.randbelow(10**7)).zfill(7)
    token = secrets.token_hex(16)
    account = account_sid or "AC" + secrets.token_hex(16)
    async with make_channel(f"127.0.0.1:{tenants_port}", token=DEV_ADMIN_TOKEN) as channel:
        admin: Any = tenants_pb2_grpc.TenantRegistryStub(channel)
        await admin.CreateTenant(
            tenants_pb.CreateTenantRequest(
                request_id=tenant_id,
                tenant_id=tenant_id,
                display_name=tenant_id,
                limits=tenants_pb.Limits(inbound_messages_per_minute=inbound_per_minute),
            )
        )
        await admin.AddSenderNumber(
            tenants_pb.AddSenderNumberRequest(tenant_id=tenant_id, number=number)
        )
        await admin.SetCredentials(
            tenants_pb.SetCredentialsRequest(
                tenant_id=tenant_id,
                credentials=tenants_pb.TwilioCredentials(account_sid=account, auth_token=token),
            )
        )
    return Tenant(tenant_id, number, token, account)


def message_params(
    tenant: Tenant, customer: str | None = None, **fields: str
) -> list[tuple[str, str]]:
    customer = customer or "+1555" + str(secrets.randbelow(10**7)).zfill(7)
    sid = "SM" + secrets.token_hex(16)
    form = inbound_form(sid, customer, tenant.number, tenant.account_sid, "Hola, quiero una paella")
    return list({**form, **fields}.items())


def sign(token: str, url: str, params: Params) -> str:
    """X-Twilio-Signature as Twilio computes it for ``url`` and the form ``params``."""
    return str(RequestValidator(token).compute_signature(url, ImmutableMultiDict(params)))


async def post_signed(
    client: httpx.AsyncClient,
    path: str,
    params: Params,
    token: str,
    *,
    signed_url: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    url = signed_url or f"{client.base_url}".rstrip("/") + path
    return await client.post(
        path,
        content=urlencode(params),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign(token, url, params),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            **(headers or {}),
        },
    )


async def stored_messages(
    conversations_port: int, tenant_id: str
) -> list[conversations_pb.Message]:
    """Every message of every conversation of ``tenant_id``, as the store has them."""
    from wamesh.conversations.v1 import conversations_pb2_grpc

    messages: list[conversations_pb.Message] = []
    async with make_channel(f"127.0.0.1:{conversations_port}", token=DEV_ADMIN_TOKEN) as channel:
        stub: Any = conversations_pb2_grpc.ConversationStoreStub(channel)
        listed = await stub.ListConversations(
            conversations_pb.ListConversationsRequest(tenant_id=tenant_id, page_size=500)
        )
        for conversation in listed.conversations:
            token = ""
            while True:
                page = await stub.ListMessages(
                    conversations_pb.ListMessagesRequest(
                        tenant_id=tenant_id,
                        conversation_id=conversation.id,
                        page_size=500,
                        page_token=token,
                    )
                )
                messages += page.messages
                token = page.next_page_token
                if not token:
                    break
    return messages


INTERNAL_TOKEN = DEV_INTERNAL_TOKEN


@dataclass
class Databases:
    tenants: str
    conversations: str


def ingress_settings(
    tenants: GrpcService, conversations_port: int, redis_url: str, **overrides: Any
) -> IngressSettings:
    values: dict[str, Any] = {
        "http_listen": "127.0.0.1:0",
        "redis_url": redis_url,
        "tenants_target": f"127.0.0.1:{tenants.port}",
        "conversations_target": f"127.0.0.1:{conversations_port}",
        "rpc_timeout_s": 2.0,
        **overrides,
    }
    return IngressSettings(**values)
