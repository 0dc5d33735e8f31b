"""The ingress's server spans, as a collector would receive them: each webhook's names the
tenant of its sender number (``wamesh.tenant.id``) once that is known, and only then."""

from __future__ import annotations

import secrets
from urllib.parse import urlencode

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.services.ingress.ingress_testkit import (
    Tenant,
    ingress_client,
    ingress_settings,
    message_params,
    post_signed,
)
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.telemetry import ATTR_TENANT_ID


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]


async def test_each_webhook_span_names_the_tenant_of_its_number(
    tenants: GrpcService, conversations: GrpcService, redis_url: str, tenant: Tenant
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = ingress_settings(tenants, conversations.port, redis_url)
    status = [
        ("MessageSid", "SM" + secrets.token_hex(16)),
        ("MessageStatus", "received"),  # nothing to store: answered once verified
        ("AccountSid", tenant.account_sid),
        ("From", f"whatsapp:{tenant.number}"),
        ("To", "whatsapp:+15550009999"),
    ]
    async with ingress_client(settings, tracer_provider=provider) as client:
        inbound = await post_signed(
            client, "/twilio/whatsapp", message_params(tenant), tenant.auth_token
        )
        callback = await post_signed(client, "/twilio/status", status, tenant.auth_token)
        unsigned = await client.post(
            "/twilio/whatsapp",
            content=urlencode(message_params(tenant)),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        not_a_form = await client.post("/twilio/whatsapp", content=b"{}")
    provider.shutdown()

    assert [inbound.status_code, callback.status_code] == [200, 200]
    assert [unsigned.status_code, not_a_form.status_code] == [403, 400]
    tenant_of = [(span.attributes or {}).get(ATTR_TENANT_ID) for span in server_spans(exporter)]
    # A forged webhook is still its number's tenant's concern; a body that is not a form
    # names no number at all.
    assert tenant_of == [tenant.id, tenant.id, tenant.id, None]
