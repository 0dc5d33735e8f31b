"""Inbound webhooks through the real mesh: stored before the 200, signatures as real
deployments sign them, refusals before any write, duplicates stored once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.services.ingress.ingress_testkit import (
    Tenant,
    create_tenant,
    message_params,
    post_signed,
    sign,
    stored_messages,
)
from wamesh_kit.rpc.server import GrpcService

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


def value(params: list[tuple[str, str]], name: str) -> str:
    return next(v for k, v in params if k == name)


async def test_a_signed_webhook_is_stored_then_answered_with_empty_twiml(
    client: httpx.AsyncClient, tenant: Tenant, conversations: GrpcService
) -> None:
    params = message_params(tenant, ProfileName="Ana López")

    response = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text == TWIML
    [stored] = await stored_messages(conversations.port, tenant.id)
    assert stored.provider_sid == value(params, "MessageSid")
    assert stored.body == "Hola, quiero una paella"
    assert stored.inbound.profile_name == "Ana López"
    assert stored.inbound.extra_fields["ApiVersion"] == "2010-04-01"
    assert not stored.inbound.rate_limited


async def test_every_field_twilio_sends_is_kept(
    client: httpx.AsyncClient, tenant: Tenant, conversations: GrpcService
) -> None:
    params = message_params(
        tenant,
        Body="",
        NumMedia="2",
        MediaUrl0="https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1",
        MediaContentType0="image/jpeg",
        MediaUrl1="https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME2",
        MediaContentType1="application/pdf",
        Latitude="40.4168",
        Longitude="-3.7038",
        Address="Puerta del Sol",
        Label="Casa",
        ButtonText="Confirmar",
        ButtonPayload="order:42:confirm",
        OriginalRepliedMessageSid="SM" + "1" * 32,
        ReferralSourceUrl="https://fb.me/ad",
        ReferralCtwaClid="clid-1",
        SomethingTwilioAddsLater="kept",
    )

    response = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)

    assert response.status_code == 200, response.text
    [stored] = await stored_messages(conversations.port, tenant.id)
    assert [(m.url[-3:], m.content_type) for m in stored.media] == [
        ("ME1", "image/jpeg"),
        ("ME2", "application/pdf"),
    ]
    assert stored.location.latitude == pytest.approx(40.4168)
    assert stored.location.label == "Casa"
    assert stored.button_payload == "order:42:confirm"
    assert stored.replied_to_sid == "SM" + "1" * 32
    assert stored.inbound.referral.ctwa_clid == "clid-1"
    assert stored.inbound.extra_fields["SomethingTwilioAddsLater"] == "kept"


@pytest.mark.parametrize(
    ("ingress_overrides", "signed_url", "headers"),
    [
        pytest.param({}, None, {}, id="direct"),
        pytest.param(
            {"trusted_proxies": ["127.0.0.1/32"]},
            "https://hooks.example.com/twilio/whatsapp",
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com"},
            id="tls-proxy",
        ),
        pytest.param(
            {"trusted_proxies": ["127.0.0.1/32"]},
            "https://hooks.example.com:443/twilio/whatsapp",
            {
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "hooks.example.com",
                "X-Forwarded-Port": "443",
            },
            id="tls-proxy-default-port-signed",
        ),
        pytest.param(
            {"trusted_proxies": ["127.0.0.0/8"]},
            "https://hooks.example.com:8443/twilio/whatsapp",
            {
                "X-Forwarded-Proto": "https,http",
                "X-Forwarded-Host": "hooks.example.com",
                "X-Forwarded-Port": "8443",
            },
            id="tls-proxy-explicit-port",
        ),
        pytest.param(
            {"public_base_url": "https://hooks.example.com"},
            "https://hooks.example.com/twilio/whatsapp",
            {},
            id="public-base-url",
        ),
    ],
    indirect=["ingress_overrides"],
)
async def test_signatures_pass_in_every_deployment_shape(
    client: httpx.AsyncClient,
    tenant: Tenant,
    conversations: GrpcService,
    signed_url: str | None,
    headers: dict[str, str],
) -> None:
    params = message_params(tenant)
    response = await post_signed(
        client,
        "/twilio/whatsapp",
        params,
        tenant.auth_token,
        signed_url=signed_url,
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert len(await stored_messages(conversations.port, tenant.id)) == 1


@pytest.fixture
def ingress_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    return dict(getattr(request, "param", {}))


async def test_a_query_string_on_the_webhook_url_is_signed_too(
    client: httpx.AsyncClient, tenant: Tenant, conversations: GrpcService
) -> None:
    params = message_params(tenant)
    path = "/twilio/whatsapp?source=console&v=2"
    response = await post_signed(client, path, params, tenant.auth_token)
    assert response.status_code == 200, response.text
    assert len(await stored_messages(conversations.port, tenant.id)) == 1


async def test_messaging_service_and_subaccount_senders(
    client: httpx.AsyncClient, tenants: GrpcService, conversations: GrpcService
) -> None:
    # A subaccount's number: Twilio signs with the subaccount's own token, which is what
    # the tenant registered as its credentials.
    subaccount = await create_tenant(tenants.port, account_sid="AC" + "5" * 32)
    params = message_params(subaccount, MessagingServiceSid="MG" + "7" * 32)

    response = await post_signed(client, "/twilio/whatsapp", params, subaccount.auth_token)

    assert response.status_code == 200, response.text
    [stored] = await stored_messages(conversations.port, subaccount.id)
    assert stored.inbound.messaging_service_sid == "MG" + "7" * 32
    assert stored.inbound.account_sid == "AC" + "5" * 32


async def test_repeated_field_names_are_all_covered_by_the_signature(
    client: httpx.AsyncClient, tenant: Tenant, conversations: GrpcService
) -> None:
    params = [*message_params(tenant), ("Tag", "b"), ("Tag", "a")]
    response = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
    assert response.status_code == 200, response.text
    [stored] = await stored_messages(conversations.port, tenant.id)
    assert stored.inbound.extra_fields["Tag"] == "b\na"


async def test_bad_signatures_are_403_store_nothing_and_log_only_reason_and_sid(
    client: httpx.AsyncClient,
    tenant: Tenant,
    tenants: GrpcService,
    conversations: GrpcService,
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = await create_tenant(tenants.port)
    params = message_params(tenant, Body="secreto del cliente")
    url = f"{client.base_url}".rstrip("/") + "/twilio/whatsapp"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    attempts = {
        "missing": {},
        "garbage": {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        "other url": {"X-Twilio-Signature": sign(tenant.auth_token, url + "x", params)},
        "other tenant": {"X-Twilio-Signature": sign(other.auth_token, url, params)},
        "tampered": {"X-Twilio-Signature": sign(tenant.auth_token, url, params[:-1])},
    }
    caplog.set_level(logging.DEBUG)
    for name, headers in attempts.items():
        response = await client.post(
            "/twilio/whatsapp", content=urlencode(params), headers={**form, **headers}
        )
        assert response.status_code == 403, name

    assert await stored_messages(conversations.port, tenant.id) == []
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert value(params, "MessageSid") in logged
    assert "secreto del cliente" not in logged
    assert tenant.auth_token not in logged


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await post_signed(
        client,
        "/twilio/whatsapp",
        message_params(tenant),
        tenant.auth_token,
        signed_url="https://attacker.example/twilio/whatsapp",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "attacker.example"},
    )
    assert response.status_code == 403


async def test_unknown_numbers_and_suspended_tenants(
    client: httpx.AsyncClient, tenant: Tenant, tenants: GrpcService
) -> None:
    from wamesh.tenants.v1 import tenants_pb2, tenants_pb2_grpc
    from wamesh_kit.rpc.client import make_channel
    from wamesh_kit.settings import DEV_ADMIN_TOKEN

    unknown = Tenant("nobody", "+14440000001", tenant.auth_token, tenant.account_sid)
    response = await post_signed(
        client, "/twilio/whatsapp", message_params(unknown), tenant.auth_token
    )
    assert response.status_code == 404

    assert (
        await post_signed(client, "/twilio/whatsapp", message_params(tenant), tenant.auth_token)
    ).status_code == 200  # now cached
    async with make_channel(f"127.0.0.1:{tenants.port}", token=DEV_ADMIN_TOKEN) as channel:
        admin: Any = tenants_pb2_grpc.TenantRegistryStub(channel)
        await admin.SetTenantStatus(
            tenants_pb2.SetTenantStatusRequest(
                tenant_id=tenant.id, status=tenants_pb2.TENANT_STATUS_SUSPENDED
            )
        )
    # The registry's invalidation reaches the ingress's in-process cache at once.
    for _ in range(50):
        response = await post_signed(
            client, "/twilio/whatsapp", message_params(tenant), tenant.auth_token
        )
        if response.status_code == 403:
            break
        await asyncio.sleep(0.02)
    assert response.status_code == 403
    assert "suspended" in response.text


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: [(k, v) for k, v in p if k != "MessageSid"], "MessageSid"),
        (lambda p: [(k, v) for k, v in p if k != "From"], "From"),
        (lambda p: [(k, v) for k, v in p if k != "To"], "To"),
        (lambda p: [(k, "99" if k == "NumMedia" else v) for k, v in p], "NumMedia"),
        (lambda p: [*p, ("Latitude", "north")], "Latitude"),
        (lambda p: [*p, ("Body2", "x" * 20_000)], "Body2"),
    ],
)
async def test_malformed_webhooks_are_400_before_anything_else(
    client: httpx.AsyncClient,
    tenant: Tenant,
    conversations: GrpcService,
    mutate: Any,
    field: str,
) -> None:
    params = mutate(message_params(tenant))
    response = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
    assert response.status_code == 400
    assert field in response.text
    assert await stored_messages(conversations.port, tenant.id) == []


async def test_bodies_that_are_not_small_forms_are_400(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    cases = [
        (b'{"MessageSid": "SM1"}', "application/json"),
        (b"\xff\xfe not utf-8", "application/x-www-form-urlencoded"),
        (b"a=" + b"x" * 70_000, "application/x-www-form-urlencoded"),
        (b"", "application/x-www-form-urlencoded"),
    ]
    for body, content_type in cases:
        response = await client.post(
            "/twilio/whatsapp", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 400, (body[:20], response.text)


async def test_the_same_message_sid_twice_or_twenty_times_at_once_is_stored_once(
    client: httpx.AsyncClient, tenant: Tenant, conversations: GrpcService
) -> None:
    params = message_params(tenant)
    first = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
    again = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
    burst_params = message_params(tenant)
    burst = await asyncio.gather(
        *(
            post_signed(client, "/twilio/whatsapp", burst_params, tenant.auth_token)
            for _ in range(20)
        )
    )

    assert first.status_code == again.status_code == 200
    assert [r.status_code for r in burst] == [200] * 20
    stored = await stored_messages(conversations.port, tenant.id)
    assert sorted(m.provider_sid for m in stored) == sorted(
        {value(params, "MessageSid"), value(burst_params, "MessageSid")}
    )


async def test_a_customer_over_the_limit_is_stored_flagged_not_dropped(
    client: httpx.AsyncClient, tenants: GrpcService, conversations: GrpcService
) -> None:
    strict = await create_tenant(tenants.port, inbound_per_minute=2)
    customer = "+15550001234"
    for _ in range(3):
        response = await post_signed(
            client, "/twilio/whatsapp", message_params(strict, customer), strict.auth_token
        )
        assert response.status_code == 200

    stored = await stored_messages(conversations.port, strict.id)
    flags = sorted(m.inbound.rate_limited for m in stored)
    assert flags == [False, False, True]


async def test_health_readiness_and_metrics(
    client: httpx.AsyncClient, tenant: Tenant, ingress_registry: CollectorRegistry
) -> None:
    await post_signed(client, "/twilio/whatsapp", message_params(tenant), tenant.auth_token)
    await client.post("/twilio/whatsapp", content=b"x=1")

    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"redis": True, "tenants": True, "conversations": True}
    metrics = (await client.get("/metrics")).text
    assert 'wamesh_ingress_requests_total{outcome="ok",route="whatsapp"} 1.0' in metrics
    assert 'wamesh_ingress_requests_total{outcome="400",route="whatsapp"} 1.0' in metrics
    assert "wamesh_ingress_request_seconds_bucket" in metrics


async def test_a_redis_that_lost_its_scripts_gets_them_again(
    client: httpx.AsyncClient,
    tenant: Tenant,
    redis_client: Any,
    ingress_registry: CollectorRegistry,
) -> None:
    await post_signed(client, "/twilio/whatsapp", message_params(tenant), tenant.auth_token)
    await redis_client.script_flush()  # as after a Redis restart
    params = message_params(tenant)
    first = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)
    again = await post_signed(client, "/twilio/whatsapp", params, tenant.auth_token)

    assert first.status_code == again.status_code == 200
    # Redis knows the repeat again (without its script, the ingress would count nothing).
    assert ingress_registry.get_sample_value("wamesh_ingress_repeats_total") == 1
    assert ingress_registry.get_sample_value("wamesh_ingress_duplicates_total") == 1


async def test_webhook_routes_take_post_only(client: httpx.AsyncClient) -> None:
    assert (await client.get("/twilio/whatsapp")).status_code == 405
    assert (await client.post("/twilio/elsewhere", content=b"")).status_code == 404
