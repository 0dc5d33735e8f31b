"""Every call's server span names the tenant its request names (``wamesh.tenant.id``)."""

from __future__ import annotations

import grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from tests.services.conversations.conversations_testkit import (
    assert_refused,
    inbound,
    make_settings,
    number,
    outbound,
    sid,
    tenant,
)
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh_conversations.app import conversations_service
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN
from wamesh_kit.telemetry import ATTR_TENANT_ID

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def tenants_by_call(spans: tuple[ReadableSpan, ...]) -> list[tuple[str, object]]:
    """(method, the span's tenant) of each server span, in the order the calls ended."""
    return [
        (span.name.rsplit("/", 1)[-1], (span.attributes or {}).get(ATTR_TENANT_ID))
        for span in spans
        if span.kind == SpanKind.SERVER
    ]


async def test_each_call_names_its_tenant_on_its_span(
    conversations_dsn: str, redis_url: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(conversations_dsn, redis_url)
    tenant_id, other, customer, sender = tenant(), tenant(), number(), number()
    async with (
        conversations_service(
            settings, registry=CollectorRegistry(), tracer_provider=provider
        ) as server,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_INTERNAL_TOKEN) as writer_channel,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_ADMIN_TOKEN) as reader_channel,
    ):
        writer = conversations_pb2_grpc.ConversationStoreStub(writer_channel)
        reader = conversations_pb2_grpc.ConversationStoreStub(reader_channel)
        recorded = await writer.RecordInbound(inbound(tenant_id, customer, sender))
        conversation_id = recorded.conversation.id
        await writer.RecordInboundBatch(
            pb.RecordInboundBatchRequest(
                requests=[inbound(tenant_id, customer, sender) for _ in range(2)]
            )
        )
        send = outbound(tenant_id, customer, sender)
        await writer.RecordOutbound(send)
        provider_sid = sid()
        await writer.UpdateOutbound(
            pb.UpdateOutboundRequest(
                tenant_id=tenant_id,
                idempotency_key=send.idempotency_key,
                provider_sid=provider_sid,
                status=pb.MESSAGE_STATUS_QUEUED,
            )
        )
        await writer.RecordStatus(
            pb.RecordStatusRequest(
                tenant_id=tenant_id, provider_sid=provider_sid, status=pb.MESSAGE_STATUS_SENT
            )
        )
        await reader.GetConversation(
            pb.GetConversationRequest(tenant_id=tenant_id, conversation_id=conversation_id)
        )
        await reader.ListConversations(pb.ListConversationsRequest(tenant_id=tenant_id))
        await reader.ListMessages(
            pb.ListMessagesRequest(tenant_id=tenant_id, conversation_id=conversation_id)
        )
        await reader.MarkRead(
            pb.MarkReadRequest(tenant_id=tenant_id, conversation_id=conversation_id)
        )
        await reader.SetOptOut(
            pb.SetOptOutRequest(
                tenant_id=tenant_id,
                participants=pb.ConversationKey(customer_number=customer, sender_number=sender),
                opted_out=True,
            )
        )
        # A refused call is found by its tenant too...
        refused = inbound(tenant_id, customer, sender)
        refused.message.from_address = "not a number"
        await assert_refused(writer.RecordInbound(refused), INVALID, "message.from_address")
        # ...but a tenant id that is not one is no attribute, and neither is a batch of many.
        await assert_refused(
            reader.ListConversations(pb.ListConversationsRequest(tenant_id="Not A Tenant")),
            INVALID,
            "tenant_id",
        )
        await writer.RecordInboundBatch(
            pb.RecordInboundBatchRequest(
                requests=[inbound(tenant_id, customer, sender), inbound(other, number(), sender)]
            )
        )

    assert tenants_by_call(exporter.get_finished_spans()) == [
        ("RecordInbound", tenant_id),
        ("RecordInboundBatch", tenant_id),
        ("RecordOutbound", tenant_id),
        ("UpdateOutbound", tenant_id),
        ("RecordStatus", tenant_id),
        ("GetConversation", tenant_id),
        ("ListConversations", tenant_id),
        ("ListMessages", tenant_id),
        ("MarkRead", tenant_id),
        ("SetOptOut", tenant_id),
        ("RecordInbound", tenant_id),
        ("ListConversations", None),
        ("RecordInboundBatch", None),
    ]
