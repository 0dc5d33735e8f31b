"""Status callbacks through the real mesh, and arbitrary input never answered with a 500."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.services.ingress.ingress_testkit import (
    INTERNAL_TOKEN,
    Tenant,
    post_signed,
    stored_messages,
)
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.server import GrpcService


async def sent_message(conversations: GrpcService, tenant: Tenant) -> str:
    """An outbound message the dispatcher recorded and Twilio accepted; its SID."""
    provider_sid = "SM" + secrets.token_hex(16)
    key = f"test:{secrets.token_hex(8)}"
    async with make_channel(f"127.0.0.1:{conversations.port}", token=INTERNAL_TOKEN) as channel:
        internal: Any = conversations_pb2_grpc.ConversationStoreStub(channel)
        await internal.RecordOutbound(
            pb.RecordOutboundRequest(
                tenant_id=tenant.id,
                idempotency_key=key,
                sender_number=tenant.number,
                customer_number="+15550009999",
                body="Tu pedido va en camino",
            )
        )
        await internal.UpdateOutbound(
            pb.UpdateOutboundRequest(
                tenant_id=tenant.id,
                idempotency_key=key,
                provider_sid=provider_sid,
                status=pb.MESSAGE_STATUS_QUEUED,
            )
        )
    return provider_sid


def callback(
    tenant: Tenant, provider_sid: str, status: str, **fields: str
) -> list[tuple[str, str]]:
    return [
        ("MessageSid", provider_sid),
        ("SmsSid", provider_sid),
        ("MessageStatus", status),
        ("SmsStatus", status),
        ("AccountSid", tenant.account_sid),
        ("From", f"whatsapp:{tenant.number}"),
        ("To", "whatsapp:+15550009999"),
        ("ApiVersion", "2010-04-01"),
        *fields.items(),
    ]


async def test_callbacks_move_the_message_forward_only(
    client: httpx.AsyncClient, tenant: Tenant, conversations: GrpcService
) -> None:
    provider_sid = await sent_message(conversations, tenant)
    for status in ("sent", "read", "delivered"):
        response = await post_signed(
            client, "/twilio/status", callback(tenant, provider_sid, status), tenant.auth_token
        )
        assert response.status_code == 200, response.text

    [message] = await stored_messages(conversations.port, tenant.id)
    assert message.status == pb.MESSAGE_STATUS_READ


async def test_a_failure_keeps_its_error_code(
    client: httpx.AsyncClient, tenant: Tenant, conversations: GrpcService
) -> None:
    provider_sid = await sent_message(conversations, tenant)
    params = callback(
        tenant, provider_sid, "failed", ErrorCode="63016", ErrorMessage="outside window"
    )
    response = await post_signed(client, "/twilio/status", params, tenant.auth_token)

    assert response.status_code == 200
    [message] = await stored_messages(conversations.port, tenant.id)
    assert message.status == pb.MESSAGE_STATUS_FAILED
    assert message.error_code == 63016


async def test_unsigned_unknown_and_malformed_callbacks(
    client: httpx.AsyncClient, tenant: Tenant, conversations: GrpcService
) -> None:
    provider_sid = await sent_message(conversations, tenant)
    unsigned = await client.post(
        "/twilio/status",
        content=urlencode(callback(tenant, provider_sid, "delivered")),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    # A status wamesh has nothing to do with is acknowledged, so Twilio does not retry it.
    unknown = await post_signed(
        client, "/twilio/status", callback(tenant, provider_sid, "receiving"), tenant.auth_token
    )
    bad_code = await post_signed(
        client,
        "/twilio/status",
        callback(tenant, provider_sid, "failed", ErrorCode="abc"),
        tenant.auth_token,
    )

    assert unsigned.status_code == 403
    assert unknown.status_code == 200
    assert bad_code.status_code == 400
    assert "ErrorCode" in bad_code.text
    [message] = await stored_messages(conversations.port, tenant.id)
    assert message.status == pb.MESSAGE_STATUS_QUEUED


form_values = st.text(max_size=30)
forms = st.lists(
    st.tuples(
        st.sampled_from(
            ["MessageSid", "From", "To", "Body", "NumMedia", "MediaUrl0", "Latitude", "X"]
        ),
        form_values,
    ),
    max_size=8,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(["/twilio/whatsapp", "/twilio/status"]), params=forms, raw=st.binary())
async def test_no_input_is_answered_with_a_server_error(
    client: httpx.AsyncClient, tenant: Tenant, path: str, params: list[tuple[str, str]], raw: bytes
) -> None:
    signed = await post_signed(client, path, params, tenant.auth_token)
    unsigned = await client.post(
        path, content=raw, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert signed.status_code < 500, signed.text
    assert unsigned.status_code < 500, unsigned.text
