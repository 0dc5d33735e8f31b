"""No input ever produces INTERNAL: arbitrary requests get an answer or a caller's error."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wamesh.common.v1.content_pb2 import Location, Media
from wamesh.conversations.v1 import conversations_pb2 as pb

CALLERS_FAULTS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
text = st.text(max_size=40)
numberish = st.one_of(text, st.from_regex(r"(whatsapp:)?\+[1-9][0-9]{6,14}", fullmatch=True))
sidish = st.one_of(text, st.from_regex(r"[A-Z]{2}[0-9a-f]{32}", fullmatch=True))
tenantish = st.one_of(text, st.just("fuzz-tenant"))
inbound_requests = st.builds(
    pb.RecordInboundRequest,
    tenant_id=tenantish,
    rate_limited=st.booleans(),
    message=st.builds(
        pb.InboundMessage,
        message_sid=sidish,
        from_address=numberish,
        to_address=numberish,
        body=text,
        profile_name=text,
        button_payload=text,
        media=st.lists(st.builds(Media, url=text, content_type=text), max_size=3),
        location=st.one_of(
            st.none(),
            st.builds(
                Location,
                latitude=st.floats(allow_nan=True),
                longitude=st.floats(allow_infinity=True),
                address=text,
            ),
        ),
        extra_fields=st.dictionaries(text, text, max_size=3),
    ),
)
status_requests = st.builds(
    pb.RecordStatusRequest,
    tenant_id=tenantish,
    provider_sid=sidish,
    status=st.integers(min_value=-5, max_value=20),
    error_code=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    error_message=text,
)
opt_out_requests = st.builds(
    pb.SetOptOutRequest,
    tenant_id=tenantish,
    participants=st.builds(pb.ConversationKey, customer_number=numberish, sender_number=numberish),
    opted_out=st.booleans(),
    reason=text,
)
list_requests = st.builds(
    pb.ListMessagesRequest,
    tenant_id=tenantish,
    conversation_id=st.one_of(text, st.uuids().map(str)),
    page_size=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    page_token=text,
)


async def answered_or_refused(call: Any) -> None:
    code, details = grpc.StatusCode.OK, ""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        code, details = error.code(), error.details() or ""
    assert code in CALLERS_FAULTS | {grpc.StatusCode.OK}, f"{code}: {details}"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=inbound_requests)
async def test_any_inbound_message(internal: Any, request: pb.RecordInboundRequest) -> None:
    await answered_or_refused(internal.RecordInbound(request))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=status_requests)
async def test_any_status_callback(internal: Any, request: pb.RecordStatusRequest) -> None:
    await answered_or_refused(internal.RecordStatus(request))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=list_requests)
async def test_any_message_listing(admin: Any, request: pb.ListMessagesRequest) -> None:
    await answered_or_refused(admin.ListMessages(request))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=opt_out_requests)
async def test_any_opt_out(internal: Any, request: pb.SetOptOutRequest) -> None:
    await answered_or_refused(internal.SetOptOut(request))
