"""The local Twilio sandbox talking to the real ingress: its inbound webhooks and status
callbacks are signed as Twilio signs, so the ingress accepts and stores them."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from tests.services.ingress.ingress_testkit import INTERNAL_TOKEN, Tenant, stored_messages
from tests.tools.sandbox.sandbox_testkit import running_sandbox
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.server import GrpcService
from wamesh_sandbox.settings import Account, Sender

CUSTOMER = "whatsapp:+15550004444"


def sandbox_account(tenant: Tenant, ingress: httpx.AsyncClient) -> Account:
    """The tenant's Twilio account as the sandbox knows it: its sender posts to the ingress."""
    sender = f"whatsapp:{tenant.number}"
    webhook = f"{str(ingress.base_url).rstrip('/')}/twilio/whatsapp#rc=3&rp=all"
    return Account(
        sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        senders={sender: Sender(sender, webhook)},
    )


async def test_a_customer_message_from_the_sandbox_is_stored(
    client: httpx.AsyncClient, conversations: GrpcService, tenant: Tenant
) -> None:
    async with (
        running_sandbox([sandbox_account(tenant, client)]) as sandbox,
        httpx.AsyncClient(base_url=sandbox.url, timeout=30) as admin,
    ):
        answer = await admin.post(
            "/sandbox/inbound",
            json={
                "from": CUSTOMER,
                "to": f"whatsapp:{tenant.number}",
                "body": "hola",
                "media": [{"url": "https://example.com/m.jpg", "content_type": "image/jpeg"}],
            },
        )

    result = answer.json()
    assert result["outcome"] == "delivered", result
    assert [a["status"] for a in result["attempts"]] == [200]
    [message] = await stored_messages(conversations.port, tenant.id)
    assert message.provider_sid == result["message_sid"]
    assert message.body == "hola"
    assert [m.url for m in message.media] == ["https://example.com/m.jpg"]


async def test_status_callbacks_from_the_sandbox_move_the_stored_message(
    client: httpx.AsyncClient, conversations: GrpcService, tenant: Tenant
) -> None:
    sender = f"whatsapp:{tenant.number}"
    async with running_sandbox([sandbox_account(tenant, client)], status_delay_s=0.02) as sandbox:
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as admin:
            opened = await admin.post(
                "/sandbox/inbound", json={"from": CUSTOMER, "to": sender, "body": "hi"}
            )
        assert opened.json()["outcome"] == "delivered"
        http = AsyncTwilioHttpClient()
        twilio = Client(tenant.account_sid, tenant.auth_token, http_client=http)
        twilio.api.base_url = sandbox.url
        try:
            sent = await twilio.messages.create_async(
                to=CUSTOMER,
                from_=sender,
                body="your order is on its way",
                status_callback=f"{str(client.base_url).rstrip('/')}/twilio/status",
            )
        finally:
            await http.close()
        await record_as_the_dispatcher_would(conversations, tenant, sent.sid)

        async def read() -> pb.Message:
            while True:
                for message in await stored_messages(conversations.port, tenant.id):
                    if (
                        message.provider_sid == sent.sid
                        and message.status == pb.MESSAGE_STATUS_READ
                    ):
                        return message
                await asyncio.sleep(0.05)

        message = await asyncio.wait_for(read(), 20)

    assert message.body == "your order is on its way"
    callbacks = [w for w in sandbox.app.sandbox.record.webhooks if w.kind == "status"]
    assert [w.params["MessageStatus"] for w in callbacks] == ["queued", "sent", "delivered", "read"]
    assert all(w.attempts[-1]["status"] == 200 for w in callbacks)


async def record_as_the_dispatcher_would(
    conversations: GrpcService, tenant: Tenant, provider_sid: str
) -> None:
    key = f"test:{secrets.token_hex(8)}"
    async with make_channel(f"127.0.0.1:{conversations.port}", token=INTERNAL_TOKEN) as channel:
        store: Any = conversations_pb2_grpc.ConversationStoreStub(channel)
        await store.RecordOutbound(
            pb.RecordOutboundRequest(
                tenant_id=tenant.id,
                idempotency_key=key,
                sender_number=tenant.number,
                customer_number=CUSTOMER.removeprefix("whatsapp:"),
                body="your order is on its way",
            )
        )
        await store.UpdateOutbound(
            pb.UpdateOutboundRequest(
                tenant_id=tenant.id,
                idempotency_key=key,
                provider_sid=provider_sid,
                status=pb.MESSAGE_STATUS_QUEUED,
            )
        )
