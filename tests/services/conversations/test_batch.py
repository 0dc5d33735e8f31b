"""RecordInboundBatch: each request stored or refused on its own, in one statement, and
concurrent batches over shared conversations neither deadlock nor double anything."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import grpc
import redis.asyncio as aioredis

from tests.services.conversations.conversations_testkit import (
    assert_refused,
    inbound,
    number,
    tenant,
    wait_for_events,
)
from wamesh.conversations.v1 import conversations_pb2 as pb


async def test_each_request_of_a_batch_is_stored_or_refused_on_its_own(
    internal: Any, admin: Any, redis_client: aioredis.Redis
) -> None:
    tenant_id, sender, customer = tenant(), number(), number()
    earlier = inbound(tenant_id, customer, sender, body="antes")
    await internal.RecordInbound(earlier)
    first = inbound(tenant_id, customer, sender, body="uno")
    second = inbound(tenant_id, customer, sender, body="dos")
    elsewhere = inbound(tenant_id, number(), sender, body="otra")
    broken = inbound(tenant_id, customer, sender)
    broken.message.from_address = "not a number"
    requests = [first, broken, second, first, elsewhere, earlier]

    response = await internal.RecordInboundBatch(pb.RecordInboundBatchRequest(requests=requests))

    results = list(response.results)
    assert [bool(r.message_id) for r in results] == [True, False, True, True, True, True]
    assert [r.duplicate for r in results] == [False, False, False, True, False, True]
    assert results[1].refusal.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert results[1].refusal.field == "message.from_address"
    assert results[3].message_id == results[0].message_id
    conversation = (
        await admin.GetConversation(
            pb.GetConversationRequest(
                tenant_id=tenant_id, conversation_id=results[0].conversation_id
            )
        )
    ).conversation
    assert conversation.unread_count == 3  # antes, uno, dos
    page = await admin.ListMessages(
        pb.ListMessagesRequest(tenant_id=tenant_id, conversation_id=conversation.id)
    )
    assert sorted(m.body for m in page.messages) == ["antes", "dos", "uno"]
    new_ids = {results[i].message_id for i in (0, 2, 4)}
    events = await wait_for_events(redis_client, new_ids)
    assert len(events) == 3
    ours = [e.message_id for e in events if e.conversation_id == conversation.id]
    assert ours == [results[0].message_id, results[2].message_id]


async def test_concurrent_batches_over_shared_conversations(internal: Any, admin: Any) -> None:
    tenant_id, sender = tenant(), number()
    customers = [number() for _ in range(10)]
    requests = [inbound(tenant_id, random.choice(customers), sender) for _ in range(200)]
    batches = [random.sample(requests, 50) for _ in range(8)]  # overlapping MessageSids

    responses = await asyncio.gather(
        *(internal.RecordInboundBatch(pb.RecordInboundBatchRequest(requests=b)) for b in batches)
    )

    sent = {r.message.message_sid for b in batches for r in b}
    ids = Counter(
        result.message_id
        for response in responses
        for result in response.results
        if not result.duplicate
    )
    assert len(ids) == len(sent), "a MessageSid was stored twice, or not at all"
    assert set(ids.values()) == {1}
    listed = await admin.ListConversations(
        pb.ListConversationsRequest(tenant_id=tenant_id, page_size=100)
    )
    per_customer = Counter(
        r.message.from_address.removeprefix("whatsapp:")
        for r in requests
        if r.message.message_sid in sent
    )
    assert {c.customer_number: c.unread_count for c in listed.conversations} == per_customer


async def test_a_batch_is_bounded(internal: Any) -> None:
    requests = [inbound(tenant(), number(), number()) for _ in range(501)]
    await assert_refused(
        internal.RecordInboundBatch(pb.RecordInboundBatchRequest(requests=requests)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "requests",
    )
