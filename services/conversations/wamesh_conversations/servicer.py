"""ConversationStore over gRPC: validate, check who is asking, call the store, answer.

Writes take the internal identity (ingress, dispatcher), SetOptOut the admin token too; reads
take the admin token or a tenant token for its own tenant. The call's span names the tenant a
request names (``wamesh.tenant.id``), once that is a valid tenant id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from opentelemetry import trace

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh_conversations import validation
from wamesh_conversations.store import ConversationStore, InboundItem, StatusChange
from wamesh_kit import ids
from wamesh_kit.errors import DomainError, InvalidArgument
from wamesh_kit.paging import PageTokens
from wamesh_kit.rpc.auth import Access, require_tenant_access, requires
from wamesh_kit.rpc.errors import status_code_for
from wamesh_kit.telemetry import tag_tenant

log = logging.getLogger(__name__)
# Conversations by last message, messages by creation: each keyed by (time, id).
PAGES = PageTokens[tuple[datetime, str]](datetime, str)
Context = grpc.aio.ServicerContext[Any, Any]
READERS = Access.ADMIN | Access.TENANT
MAX_BATCH = 500


class ConversationStoreServicer(conversations_pb2_grpc.ConversationStoreServicer):
    def __init__(
        self, store: ConversationStore, on_event: Callable[[], None] = lambda: None
    ) -> None:
        self._store = store
        self._on_event = on_event

    @requires(Access.INTERNAL)
    async def RecordInbound(
        self, request: pb.RecordInboundRequest, context: Context
    ) -> pb.RecordInboundResponse:
        _tag_tenant(request.tenant_id)
        participants = validation.inbound(request)
        received_at = validation.when(
            request.received_at, request.HasField("received_at"), field="received_at"
        )
        response = await self._store.record_inbound(request, participants, received_at)
        if not response.duplicate:
            self._on_event()
        return response

    @requires(Access.INTERNAL)
    async def RecordInboundBatch(
        self, request: pb.RecordInboundBatchRequest, context: Context
    ) -> pb.RecordInboundBatchResponse:
        if len(request.requests) > MAX_BATCH:
            raise InvalidArgument(f"at most {MAX_BATCH} requests", field="requests")
        _tag_batch_tenant(request)
        results = [pb.RecordInboundResult() for _ in request.requests]
        first_of: dict[str, int] = {}  # MessageSid → index of its first valid request
        items: list[tuple[int, InboundItem]] = []
        for index, one in enumerate(request.requests):
            try:
                participants = validation.inbound(one)
                received_at = validation.when(
                    one.received_at, one.HasField("received_at"), field="received_at"
                )
            except DomainError as error:
                results[index].refusal.CopyFrom(_refusal(error))
                continue
            if one.message.message_sid not in first_of:
                first_of[one.message.message_sid] = index
                items.append((index, InboundItem(one, participants, received_at)))
        outcomes = await self._store.record_inbound_batch([item for _, item in items])
        for (index, _), outcome in zip(items, outcomes, strict=True):
            result = results[index]
            if outcome.refusal is not None:
                result.refusal.CopyFrom(_refusal(outcome.refusal))
            else:
                result.message_id = outcome.message_id
                result.conversation_id = outcome.conversation_id
                result.duplicate = outcome.duplicate
        for index, one in enumerate(request.requests):
            first = first_of.get(one.message.message_sid)
            if first is not None and first != index and not results[index].HasField("refusal"):
                # A repeat within the batch: the answer of its first, as a duplicate.
                results[index].CopyFrom(results[first])
                if not results[first].HasField("refusal"):
                    results[index].duplicate = True
        if any(not o.duplicate and o.refusal is None for o in outcomes):
            self._on_event()
        return pb.RecordInboundBatchResponse(results=results)

    @requires(Access.INTERNAL)
    async def RecordOutbound(
        self, request: pb.RecordOutboundRequest, context: Context
    ) -> pb.RecordOutboundResponse:
        _tag_tenant(request.tenant_id)
        participants = validation.outbound(request)
        return await self._store.record_outbound(request, participants)

    @requires(Access.INTERNAL)
    async def UpdateOutbound(
        self, request: pb.UpdateOutboundRequest, context: Context
    ) -> pb.UpdateOutboundResponse:
        _tag_tenant(request.tenant_id)
        ids.tenant_id(request.tenant_id)
        validation.idempotency_key(request.idempotency_key)
        if request.provider_sid:
            validation.provider_sid(request.provider_sid)
        validation.callback_status(request.status, required=False)
        change = None
        if request.status != pb.MESSAGE_STATUS_UNSPECIFIED:
            change = _change(request)
        message = await self._store.update_outbound(
            request.tenant_id, request.idempotency_key, request.provider_sid, change
        )
        self._on_event()
        return pb.UpdateOutboundResponse(message=message)

    @requires(Access.INTERNAL)
    async def RecordStatus(
        self, request: pb.RecordStatusRequest, context: Context
    ) -> pb.RecordStatusResponse:
        _tag_tenant(request.tenant_id)
        ids.tenant_id(request.tenant_id)
        validation.provider_sid(request.provider_sid)
        validation.callback_status(request.status, required=True)
        response = await self._store.record_status(
            request.tenant_id, request.provider_sid, _change(request)
        )
        self._on_event()
        return response

    @requires(READERS)
    async def GetConversation(
        self, request: pb.GetConversationRequest, context: Context
    ) -> pb.GetConversationResponse:
        tenant_id = _readable_tenant(request.tenant_id)
        key = request.WhichOneof("key")
        if key == "conversation_id":
            conversation = await self._store.get_conversation(
                tenant_id, validation.conversation_id(request.conversation_id)
            )
        elif key == "participants":
            participants = validation.participants(request.participants)
            conversation = await self._store.get_conversation(tenant_id, participants)
        else:
            raise InvalidArgument("conversation_id or participants is required", field="key")
        return pb.GetConversationResponse(conversation=conversation)

    @requires(READERS)
    async def ListConversations(
        self, request: pb.ListConversationsRequest, context: Context
    ) -> pb.ListConversationsResponse:
        tenant_id = _readable_tenant(request.tenant_id)
        size = validation.page_size(request.page_size)
        sender = (
            validation.number(request.sender_number, "sender_number")
            if request.sender_number
            else ""
        )
        query = ("conversations", tenant_id, str(request.unread_only), sender)
        after = PAGES.decode(request.page_token, *query)
        rows = await self._store.list_conversations(
            tenant_id,
            after=after,
            limit=size + 1,
            unread_only=request.unread_only,
            sender_number=sender,
        )
        page, more = rows[:size], len(rows) > size
        token = ""
        if more:
            last = page[-1]
            token = PAGES.encode((last.last_message_at.ToDatetime(tzinfo=UTC), last.id), *query)
        return pb.ListConversationsResponse(conversations=page, next_page_token=token)

    @requires(READERS)
    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: Context
    ) -> pb.ListMessagesResponse:
        tenant_id = _readable_tenant(request.tenant_id)
        conversation_id = validation.conversation_id(request.conversation_id)
        size = validation.page_size(request.page_size)
        query = ("messages", tenant_id, conversation_id)
        after = PAGES.decode(request.page_token, *query)
        rows = await self._store.list_messages(
            tenant_id, conversation_id, after=after, limit=size + 1
        )
        page, more = rows[:size], len(rows) > size
        token = ""
        if more:
            last = page[-1]
            token = PAGES.encode((last.created_at.ToDatetime(tzinfo=UTC), last.id), *query)
        return pb.ListMessagesResponse(messages=page, next_page_token=token)

    @requires(READERS)
    async def MarkRead(self, request: pb.MarkReadRequest, context: Context) -> pb.MarkReadResponse:
        tenant_id = _readable_tenant(request.tenant_id)
        conversation_id = validation.conversation_id(request.conversation_id)
        through = None
        if request.HasField("read_through"):
            through = validation.when(request.read_through, True, field="read_through")
        conversation = await self._store.mark_read(tenant_id, conversation_id, through)
        return pb.MarkReadResponse(conversation=conversation)

    @requires(Access.INTERNAL | Access.ADMIN)
    async def SetOptOut(
        self, request: pb.SetOptOutRequest, context: Context
    ) -> pb.SetOptOutResponse:
        _tag_tenant(request.tenant_id)
        participants = validation.opt_out(request)
        conversation, changed = await self._store.set_opt_out(
            request.tenant_id, participants, request.opted_out
        )
        if changed:
            log.info(
                "conversation %s of tenant %s opted %s (%s)",
                conversation.id,
                request.tenant_id,
                "out" if request.opted_out else "back in",
                request.reason or "no reason given",
            )
        return pb.SetOptOutResponse(conversation=conversation, changed=changed)


def _refusal(error: DomainError) -> pb.RecordRefusal:
    return pb.RecordRefusal(
        code=status_code_for(error).value[0], message=error.message, field=error.field or ""
    )


def _readable_tenant(tenant_id: str) -> str:
    _tag_tenant(tenant_id)
    ids.tenant_id(tenant_id)
    require_tenant_access(tenant_id)
    return tenant_id


def _tag_tenant(tenant_id: str) -> None:
    """Name the tenant on the call's span, before anything may refuse the call, so refusals
    are found by tenant too. Only a valid id: a span attribute is no place for any input."""
    # is_recording first: with tracing off, no request pays for the id check.
    if trace.get_current_span().is_recording() and ids.TENANT_ID.fullmatch(tenant_id):
        tag_tenant(tenant_id)


def _tag_batch_tenant(request: pb.RecordInboundBatchRequest) -> None:
    """A batch names its tenant when all its requests name the same one (ingress batches
    webhooks of many tenants together: then the span names none)."""
    if trace.get_current_span().is_recording():
        tenants = {one.tenant_id for one in request.requests}
        if len(tenants) == 1:
            _tag_tenant(tenants.pop())


def _change(request: pb.RecordStatusRequest | pb.UpdateOutboundRequest) -> StatusChange:
    return StatusChange(
        status=request.status,
        occurred_at=validation.when(
            request.occurred_at, request.HasField("occurred_at"), field="occurred_at"
        ),
        error_code=request.error_code,
        error_message=validation.bounded_text(request.error_message, "error_message"),
    )
