"""RecordInbound / RecordOutbound / UpdateOutbound over a real socket: storage, idempotency,
bad input, and the reads (paging, unread, tenant isolation)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tests.services.conversations.conversations_testkit import (
    assert_refused,
    inbound,
    number,
    outbound,
    sid,
    tenant,
)
from wamesh.common.v1.content_pb2 import ContentTemplate, Location, Media
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh_kit.rpc.auth import mint_tenant_token
from wamesh_kit.settings import DEV_JWT_SECRET

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_record_inbound_stores_the_message_and_opens_the_conversation(
    internal: Any, admin: Any
) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    request = inbound(
        tenant_id,
        customer,
        sender,
        media=[Media(url="https://api.twilio.com/m/1", content_type="image/jpeg")],
        extra_fields={"ChannelMetadata": "{}"},
    )
    request.received_at.FromSeconds(1_790_000_000)

    response = await internal.RecordInbound(request)

    assert not response.duplicate
    message, conversation = response.message, response.conversation
    assert message.direction == pb.DIRECTION_INBOUND
    assert message.status == pb.MESSAGE_STATUS_RECEIVED
    assert message.provider_sid == request.message.message_sid
    assert message.body == "hola"
    assert message.media[0].content_type == "image/jpeg"
    assert message.inbound.extra_fields["ChannelMetadata"] == "{}"
    assert message.created_at.seconds == 1_790_000_000
    assert conversation.customer_number == customer
    assert conversation.sender_number == sender
    assert conversation.profile_name == "Ana"
    assert conversation.unread_count == 1
    assert conversation.window_open_until.seconds == 1_790_000_000 + 24 * 3600
    stored = await admin.ListMessages(
        pb.ListMessagesRequest(tenant_id=tenant_id, conversation_id=conversation.id)
    )
    assert list(stored.messages) == [message]


async def test_a_repeated_message_sid_changes_nothing(internal: Any, admin: Any) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    request = inbound(tenant_id, customer, sender)
    first = await internal.RecordInbound(request)

    again = await internal.RecordInbound(request)
    racing = await asyncio.gather(*(internal.RecordInbound(request) for _ in range(20)))

    assert again.duplicate
    assert again.message == first.message
    assert all(r.duplicate and r.message.id == first.message.id for r in racing)
    conversation = (
        await admin.GetConversation(
            pb.GetConversationRequest(tenant_id=tenant_id, conversation_id=first.conversation.id)
        )
    ).conversation
    assert conversation.unread_count == 1


async def test_twenty_concurrent_first_deliveries_store_one_message(
    internal: Any, admin: Any
) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    request = inbound(tenant_id, customer, sender)

    results = await asyncio.gather(*(internal.RecordInbound(request) for _ in range(20)))

    assert sum(not r.duplicate for r in results) == 1
    assert len({r.message.id for r in results}) == 1
    page = await admin.ListMessages(
        pb.ListMessagesRequest(tenant_id=tenant_id, conversation_id=results[0].conversation.id)
    )
    assert len(page.messages) == 1
    assert page.messages[0].id == results[0].message.id


async def test_location_and_button_messages_have_no_body_and_are_kept(internal: Any) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    located = await internal.RecordInbound(
        inbound(
            tenant_id, customer, sender, body="", location=Location(latitude=40.4, longitude=-3.7)
        )
    )
    button = await internal.RecordInbound(
        inbound(tenant_id, customer, sender, body="", button_payload="order:42:confirm")
    )
    assert located.message.location.latitude == pytest.approx(40.4)
    assert button.message.button_payload == "order:42:confirm"
    assert button.conversation.unread_count == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": "Not A Tenant"}, "tenant_id"),
        ({"message_sid": ""}, "message.message_sid"),
        ({"message_sid": "SM123"}, "message.message_sid"),
        ({"from_address": ""}, "message.from_address"),
        ({"from_address": "whatsapp:hello"}, "message.from_address"),
        ({"to_address": ""}, "message.to_address"),
        ({"body": ""}, "message.body"),
        ({"body": "x" * 70_000}, "message.body"),
        ({"media": [Media(url="", content_type="image/png")]}, "message.media[0].url"),
        ({"media": [Media(url=f"https://m/{i}") for i in range(11)]}, "message.media"),
    ],
)
async def test_bad_inbound_is_refused_naming_the_field_and_writes_nothing(
    internal: Any, admin: Any, change: dict[str, Any], field: str
) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    request = inbound(tenant_id, customer, sender)
    if "tenant_id" in change:
        request.tenant_id = change.pop("tenant_id")
    for name, value in change.items():
        if name == "media":
            request.message.media.extend(value)
        else:
            setattr(request.message, name, value)

    await assert_refused(internal.RecordInbound(request), INVALID, field)

    listed = await admin.ListConversations(pb.ListConversationsRequest(tenant_id=tenant_id))
    assert not listed.conversations


async def test_record_outbound_is_idempotent_on_its_key(internal: Any, admin: Any) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    request = outbound(
        tenant_id,
        customer,
        sender,
        template=ContentTemplate(content_sid="HX" + "a" * 32, variables={"1": "Ana"}),
    )

    first = await internal.RecordOutbound(request)
    again = await internal.RecordOutbound(request)

    assert not first.duplicate
    assert again.duplicate
    assert again.message == first.message
    message = first.message
    assert message.direction == pb.DIRECTION_OUTBOUND
    assert message.status == pb.MESSAGE_STATUS_PENDING
    assert message.idempotency_key == request.idempotency_key
    assert message.template.variables["1"] == "Ana"
    assert not message.provider_sid
    conversation = (
        await admin.GetConversation(
            pb.GetConversationRequest(
                tenant_id=tenant_id,
                participants=pb.ConversationKey(customer_number=customer, sender_number=sender),
            )
        )
    ).conversation
    assert conversation.id == message.conversation_id
    assert conversation.unread_count == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tenant_id": ""}, "tenant_id"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"customer_number": ""}, "customer_number"),
        ({"sender_number": "nope"}, "sender_number"),
        ({"body": ""}, "body"),
        ({"template": ContentTemplate(content_sid="XX1")}, "template.content_sid"),
    ],
)
async def test_bad_outbound_is_refused_naming_the_field(
    internal: Any, fields: dict[str, Any], field: str
) -> None:
    request = outbound(tenant(), number(), number())
    for name, value in fields.items():
        if name == "template":
            request.template.CopyFrom(value)
        else:
            setattr(request, name, value)
    await assert_refused(internal.RecordOutbound(request), INVALID, field)


async def test_update_outbound_attaches_the_sid_once(internal: Any) -> None:
    tenant_id = tenant()
    request = outbound(tenant_id, number(), number())
    await internal.RecordOutbound(request)
    provider_sid = sid()
    update = pb.UpdateOutboundRequest(
        tenant_id=tenant_id,
        idempotency_key=request.idempotency_key,
        provider_sid=provider_sid,
        status=pb.MESSAGE_STATUS_QUEUED,
    )

    first = (await internal.UpdateOutbound(update)).message
    repeat = (await internal.UpdateOutbound(update)).message

    assert first.provider_sid == provider_sid
    assert first.status == pb.MESSAGE_STATUS_QUEUED
    assert repeat.status_history == first.status_history
    update.provider_sid = sid()
    await assert_refused(
        internal.UpdateOutbound(update), grpc.StatusCode.FAILED_PRECONDITION, "provider_sid"
    )
    update.idempotency_key = "never-recorded"
    await assert_refused(
        internal.UpdateOutbound(update), grpc.StatusCode.NOT_FOUND, "idempotency_key"
    )


async def test_writes_take_the_internal_identity(connect: Any, admin: Any) -> None:
    request = inbound(tenant(), number(), number())
    await assert_refused(admin.RecordInbound(request), grpc.StatusCode.PERMISSION_DENIED)
    await assert_refused(connect(None).RecordInbound(request), grpc.StatusCode.UNAUTHENTICATED)


async def test_conversations_list_newest_first_in_pages_and_unread_only(
    internal: Any, admin: Any
) -> None:
    tenant_id, sender = tenant(), number()
    customers = [number() for _ in range(5)]
    base = 1_790_000_000
    for offset, customer in enumerate(customers):
        request = inbound(tenant_id, customer, sender)
        request.received_at.FromSeconds(base + offset)
        await internal.RecordInbound(request)
    newest_first = list(reversed(customers))
    first = (
        await admin.ListConversations(pb.ListConversationsRequest(tenant_id=tenant_id, page_size=1))
    ).conversations[0]
    await admin.MarkRead(pb.MarkReadRequest(tenant_id=tenant_id, conversation_id=first.id))

    async def pages(**filters: Any) -> list[str]:
        seen, token = [], ""
        while True:
            page = await admin.ListConversations(
                pb.ListConversationsRequest(
                    tenant_id=tenant_id, page_size=2, page_token=token, **filters
                )
            )
            seen += [c.customer_number for c in page.conversations]
            token = page.next_page_token
            if not token:
                return seen

    assert await pages() == newest_first
    assert await pages(unread_only=True) == newest_first[1:]
    assert await pages(sender_number=f"whatsapp:{sender}") == newest_first
    assert await pages(sender_number=number()) == []
    token = (
        await admin.ListConversations(pb.ListConversationsRequest(tenant_id=tenant_id, page_size=2))
    ).next_page_token
    await assert_refused(
        admin.ListConversations(
            pb.ListConversationsRequest(tenant_id=tenant_id, page_token=token, unread_only=True)
        ),
        INVALID,
        "page_token",
    )
    await assert_refused(
        admin.ListConversations(pb.ListConversationsRequest(tenant_id=tenant(), page_token=token)),
        INVALID,
        "page_token",
    )
    await assert_refused(
        admin.ListConversations(
            pb.ListConversationsRequest(tenant_id=tenant_id, page_token="garbage!")
        ),
        INVALID,
        "page_token",
    )


async def test_messages_page_newest_first_and_mark_read(internal: Any, admin: Any) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    base = 1_790_000_000
    recorded = []
    for offset in range(7):
        request = inbound(tenant_id, customer, sender, body=f"m{offset}")
        # Two messages in the same microsecond: the id breaks the tie, nothing is skipped.
        request.received_at.FromSeconds(base + offset // 2)
        recorded.append((await internal.RecordInbound(request)).message)
    conversation_id = recorded[0].conversation_id

    seen, token = [], ""
    while True:
        page = await admin.ListMessages(
            pb.ListMessagesRequest(
                tenant_id=tenant_id, conversation_id=conversation_id, page_size=3, page_token=token
            )
        )
        seen += list(page.messages)
        token = page.next_page_token
        if not token:
            break
    assert sorted(m.id for m in seen) == sorted(m.id for m in recorded)
    assert [m.created_at.seconds for m in seen] == sorted(
        (m.created_at.seconds for m in recorded), reverse=True
    )

    through = Timestamp(seconds=base + 1)
    partly = await admin.MarkRead(
        pb.MarkReadRequest(
            tenant_id=tenant_id, conversation_id=conversation_id, read_through=through
        )
    )
    assert partly.conversation.unread_count == 3  # received at base+2 and base+3
    fully = await admin.MarkRead(
        pb.MarkReadRequest(tenant_id=tenant_id, conversation_id=conversation_id)
    )
    assert fully.conversation.unread_count == 0
    await assert_refused(
        admin.ListMessages(
            pb.ListMessagesRequest(
                tenant_id=tenant_id, conversation_id="00000000-0000-4000-8000-000000000000"
            )
        ),
        grpc.StatusCode.NOT_FOUND,
        "conversation_id",
    )
    await assert_refused(
        admin.ListMessages(
            pb.ListMessagesRequest(
                tenant_id=tenant_id, conversation_id=conversation_id, page_size=-1
            )
        ),
        INVALID,
        "page_size",
    )


async def test_a_tenant_token_reads_its_own_tenant_only(internal: Any, connect: Any) -> None:
    mine, theirs = tenant(), tenant()
    own = (await internal.RecordInbound(inbound(mine, number(), number()))).conversation
    other = (await internal.RecordInbound(inbound(theirs, number(), number()))).conversation
    reader = connect(mint_tenant_token(DEV_JWT_SECRET, mine, timedelta(minutes=5)))

    listed = await reader.ListConversations(pb.ListConversationsRequest(tenant_id=mine))
    assert [c.id for c in listed.conversations] == [own.id]
    await assert_refused(
        reader.ListConversations(pb.ListConversationsRequest(tenant_id=theirs)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # Their conversation id under my tenant: not found, not theirs.
    await assert_refused(
        reader.ListMessages(pb.ListMessagesRequest(tenant_id=mine, conversation_id=other.id)),
        grpc.StatusCode.NOT_FOUND,
    )
    await assert_refused(
        reader.RecordInbound(inbound(mine, number(), number())), grpc.StatusCode.PERMISSION_DENIED
    )


IMPLAUSIBLE = Timestamp(seconds=100)  # 1970: outside what the store accepts as a real time


async def test_an_implausible_received_at_is_refused_naming_received_at(internal: Any) -> None:
    request = inbound(tenant(), number(), number())
    request.received_at.CopyFrom(IMPLAUSIBLE)

    await assert_refused(internal.RecordInbound(request), INVALID, "received_at")


async def test_an_implausible_received_at_in_a_batch_is_refused_naming_received_at(
    internal: Any,
) -> None:
    request = inbound(tenant(), number(), number())
    request.received_at.CopyFrom(IMPLAUSIBLE)

    response = await internal.RecordInboundBatch(pb.RecordInboundBatchRequest(requests=[request]))

    [result] = response.results
    assert result.refusal.code == INVALID.value[0]
    assert result.refusal.field == "received_at", result.refusal


async def test_an_implausible_read_through_is_refused_naming_read_through(admin: Any) -> None:
    request = pb.MarkReadRequest(
        tenant_id=tenant(),
        conversation_id="00000000-0000-4000-8000-000000000000",
        read_through=IMPLAUSIBLE,
    )

    await assert_refused(admin.MarkRead(request), INVALID, "read_through")


async def test_an_implausible_occurred_at_is_refused_naming_occurred_at(internal: Any) -> None:
    status = pb.RecordStatusRequest(
        tenant_id=tenant(),
        provider_sid=sid(),
        status=pb.MESSAGE_STATUS_DELIVERED,
        occurred_at=IMPLAUSIBLE,
    )
    update = pb.UpdateOutboundRequest(
        tenant_id=tenant(),
        idempotency_key="k",
        status=pb.MESSAGE_STATUS_SENT,
        occurred_at=IMPLAUSIBLE,
    )

    await assert_refused(internal.RecordStatus(status), INVALID, "occurred_at")
    await assert_refused(internal.UpdateOutbound(update), INVALID, "occurred_at")
