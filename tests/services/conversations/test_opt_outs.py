"""SetOptOut over a real socket: the state it keeps, what it refuses, and what it changes
elsewhere: inbound events say whether the customer had opted out, and outbound messages to a
customer who opted out are recorded FAILED with 21610 instead of being let through."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from tests.services.conversations.conversations_testkit import (
    assert_refused,
    inbound,
    number,
    outbound,
    tenant,
    wait_for_events,
)
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh_kit.rpc.auth import mint_tenant_token
from wamesh_kit.settings import DEV_JWT_SECRET

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def opt_out(
    tenant_id: str, customer: str, sender: str, opted_out: bool = True, reason: str = "STOP"
) -> pb.SetOptOutRequest:
    return pb.SetOptOutRequest(
        tenant_id=tenant_id,
        participants=pb.ConversationKey(customer_number=customer, sender_number=sender),
        opted_out=opted_out,
        reason=reason,
    )


async def test_opting_out_and_back_in_changes_the_conversation_once_each(
    internal: Any, admin: Any
) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    recorded = await internal.RecordInbound(inbound(tenant_id, customer, sender, body="STOP"))
    assert not recorded.conversation.opted_out

    out = await internal.SetOptOut(opt_out(tenant_id, customer, sender))
    out_again = await internal.SetOptOut(opt_out(tenant_id, customer, sender))
    read = await admin.GetConversation(
        pb.GetConversationRequest(tenant_id=tenant_id, conversation_id=recorded.conversation.id)
    )
    back = await internal.SetOptOut(opt_out(tenant_id, customer, sender, False, "START"))
    back_again = await internal.SetOptOut(opt_out(tenant_id, customer, sender, False, "START"))

    assert (out.changed, out.conversation.opted_out) == (True, True)
    assert out.conversation.id == recorded.conversation.id
    assert (out_again.changed, out_again.conversation) == (False, out.conversation)
    assert read.conversation.opted_out
    assert (back.changed, back.conversation.opted_out) == (True, False)
    assert (back_again.changed, back_again.conversation.opted_out) == (False, False)
    # Nothing else of the conversation moved.
    assert back_again.conversation.unread_count == recorded.conversation.unread_count == 1
    assert back_again.conversation.profile_name == "Ana"


async def test_a_conversation_that_does_not_exist_yet_is_created(internal: Any, admin: Any) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    # whatsapp:-prefixed numbers name the same conversation as plain E.164 ones.
    out = await internal.SetOptOut(opt_out(tenant_id, f"whatsapp:{customer}", sender))
    quiet_customer = number()
    opted_in = await internal.SetOptOut(opt_out(tenant_id, quiet_customer, sender, False))

    assert (out.changed, out.conversation.opted_out) == (True, True)
    assert (out.conversation.customer_number, out.conversation.sender_number) == (
        customer,
        sender,
    )
    assert out.conversation.unread_count == 0
    # A new conversation starts opted in: opting it in changed nothing, but it exists now.
    assert (opted_in.changed, opted_in.conversation.opted_out) == (False, False)
    listed = await admin.ListConversations(pb.ListConversationsRequest(tenant_id=tenant_id))
    assert {c.id for c in listed.conversations} == {out.conversation.id, opted_in.conversation.id}
    later = await internal.RecordInbound(inbound(tenant_id, customer, sender, body="hola"))
    assert later.conversation.id == out.conversation.id
    assert later.conversation.opted_out


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": "Not A Tenant"}, "tenant_id"),
        ({"customer_number": ""}, "participants.customer_number"),
        ({"customer_number": "whatsapp:hello"}, "participants.customer_number"),
        ({"sender_number": ""}, "participants.sender_number"),
        ({"sender_number": "12345"}, "participants.sender_number"),
        ({"reason": "STOP\x00"}, "reason"),
        ({"reason": "x" * 5_000}, "reason"),
    ],
)
async def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    internal: Any, admin: Any, change: dict[str, str], field: str
) -> None:
    tenant_id = tenant()
    request = opt_out(tenant_id, number(), number())
    for name, value in change.items():
        if name.endswith("_number"):
            setattr(request.participants, name, value)
        else:
            setattr(request, name, value)

    await assert_refused(internal.SetOptOut(request), INVALID, field)

    listed = await admin.ListConversations(pb.ListConversationsRequest(tenant_id=tenant_id))
    assert not listed.conversations


async def test_missing_participants_are_refused_naming_the_number(internal: Any) -> None:
    request = pb.SetOptOutRequest(tenant_id=tenant(), opted_out=True)

    await assert_refused(internal.SetOptOut(request), INVALID, "participants.sender_number")


async def test_the_admin_and_internal_callers_may_set_it_a_tenant_may_not(
    admin: Any, connect: Any
) -> None:
    tenant_id = tenant()
    assert (await admin.SetOptOut(opt_out(tenant_id, number(), number()))).changed
    own_token = connect(mint_tenant_token(DEV_JWT_SECRET, tenant_id, timedelta(minutes=5)))
    await assert_refused(
        own_token.SetOptOut(opt_out(tenant_id, number(), number())),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await assert_refused(
        connect(None).SetOptOut(opt_out(tenant_id, number(), number())),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_an_inbound_event_says_whether_the_customer_had_opted_out_before_it(
    internal: Any, redis_client: aioredis.Redis
) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    stop = await internal.RecordInbound(inbound(tenant_id, customer, sender, body="STOP"))
    await internal.SetOptOut(opt_out(tenant_id, customer, sender))
    start = await internal.RecordInbound(inbound(tenant_id, customer, sender, body="START"))
    await internal.SetOptOut(opt_out(tenant_id, customer, sender, False, "START"))
    after = await internal.RecordInbound(inbound(tenant_id, customer, sender, body="hola"))
    # The batch statement flags its events the same way.
    await internal.SetOptOut(opt_out(tenant_id, customer, sender))
    batch = await internal.RecordInboundBatch(
        pb.RecordInboundBatchRequest(
            requests=[
                inbound(tenant_id, customer, sender, body="START"),
                inbound(tenant_id, number(), sender, body="hola"),
            ]
        )
    )
    batch_ids = [result.message_id for result in batch.results]

    ids = [stop.message.id, start.message.id, after.message.id, *batch_ids]
    events = {e.message_id: e for e in await wait_for_events(redis_client, set(ids))}

    assert [events[i].customer_opted_out for i in ids] == [False, True, False, True, False]
    assert events[start.message.id].content.body == "START"
    # The response's conversation is the one after the message: still opted out.
    assert start.conversation.opted_out
    assert not after.conversation.opted_out


async def test_an_outbound_message_to_a_customer_who_opted_out_is_failed_with_21610(
    internal: Any, admin: Any
) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    await internal.SetOptOut(opt_out(tenant_id, customer, sender))
    request = outbound(tenant_id, customer, sender)

    refused = await internal.RecordOutbound(request)
    again = await internal.RecordOutbound(request)

    assert refused.recipient_opted_out
    assert not refused.duplicate
    message = refused.message
    assert message.status == pb.MESSAGE_STATUS_FAILED
    assert message.error_code == 21610
    assert "opted out" in message.error_message
    assert [(c.status, c.error_code) for c in message.status_history] == [
        (pb.MESSAGE_STATUS_PENDING, 0),
        (pb.MESSAGE_STATUS_FAILED, 21610),
    ]
    assert not message.provider_sid
    # A repeat of the key answers the same.
    assert (again.duplicate, again.recipient_opted_out, again.message) == (True, True, message)
    stored = await admin.ListMessages(
        pb.ListMessagesRequest(tenant_id=tenant_id, conversation_id=message.conversation_id)
    )
    assert list(stored.messages) == [message]


async def test_despite_opt_out_records_the_message_to_be_sent(internal: Any) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    await internal.SetOptOut(opt_out(tenant_id, customer, sender))
    request = outbound(tenant_id, customer, sender, body="You will get no more messages")
    request.despite_opt_out = True

    confirmation = await internal.RecordOutbound(request)
    again = await internal.RecordOutbound(request)

    assert not confirmation.recipient_opted_out
    assert confirmation.message.status == pb.MESSAGE_STATUS_PENDING
    assert confirmation.message.error_code == 0
    assert (again.duplicate, again.recipient_opted_out) == (True, False)


async def test_once_opted_back_in_outbound_messages_go_again(internal: Any) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    await internal.SetOptOut(opt_out(tenant_id, customer, sender))
    refused = await internal.RecordOutbound(outbound(tenant_id, customer, sender))
    await internal.SetOptOut(opt_out(tenant_id, customer, sender, False, "START"))

    accepted = await internal.RecordOutbound(outbound(tenant_id, customer, sender))
    repeated = await internal.RecordOutbound(
        outbound(tenant_id, customer, sender, idempotency_key=refused.message.idempotency_key)
    )

    assert not accepted.recipient_opted_out
    assert accepted.message.status == pb.MESSAGE_STATUS_PENDING
    # The refused key stays refused: its message was failed, never to be sent.
    assert (repeated.duplicate, repeated.recipient_opted_out) == (True, True)


async def test_a_message_recorded_before_the_opt_out_answers_as_it_was_recorded(
    internal: Any,
) -> None:
    tenant_id, customer, sender = tenant(), number(), number()
    request = outbound(tenant_id, customer, sender)
    first = await internal.RecordOutbound(request)
    await internal.SetOptOut(opt_out(tenant_id, customer, sender))

    again = await internal.RecordOutbound(request)

    assert (again.duplicate, again.recipient_opted_out) == (True, False)
    assert again.message == first.message
