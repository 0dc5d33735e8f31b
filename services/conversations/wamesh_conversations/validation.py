"""What a valid request looks like: every check names the field it refuses.

Validators return normalised values (E.164 numbers, defaults filled), so the store only ever
sees valid data and no input can reach Postgres in a shape that makes it fail.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from wamesh.common.v1 import content_pb2
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh_conversations.statuses import OUTBOUND_STATUSES
from wamesh_kit import ids
from wamesh_kit.errors import InvalidArgument
from wamesh_kit.numbers import normalize_number

MAX_BODY = 65_536  # ingress caps a whole webhook at 64 KiB; WhatsApp bodies are far shorter
MAX_TEXT = 4_096
MAX_MEDIA = 10  # Twilio's NumMedia maximum
MAX_KEY = 200
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class Participants:
    sender_number: str
    customer_number: str


def storable_text(value: str, field: str) -> str:
    """Postgres text cannot hold U+0000: refused, naming the field. (Only what lands in text
    columns is checked; everything else is stored as protobuf bytes, which can hold it.)"""
    if "\x00" in value:
        raise InvalidArgument("must not contain NUL characters", field=field)
    return value


def inbound(request: pb.RecordInboundRequest) -> Participants:
    ids.tenant_id(request.tenant_id)
    message = request.message
    storable_text(message.body, "message.body")
    storable_text(message.profile_name, "message.profile_name")
    ids.twilio_sid(message.message_sid, field="message.message_sid")
    customer = _number(message.from_address, "message.from_address")
    sender = _number(message.to_address, "message.to_address")
    _bounded(message.body, "message.body", MAX_BODY)
    _media(message.media, "message.media")
    for name in ("profile_name", "button_text", "button_payload", "message_type"):
        _bounded(getattr(message, name), f"message.{name}", MAX_TEXT)
    has_content = (
        message.body
        or message.media
        or message.HasField("location")
        or message.button_payload
        or message.button_text
    )
    if not has_content:
        raise InvalidArgument(
            "body and media are both empty (and there is no location or button)",
            field="message.body",
        )
    return Participants(sender, customer)


def outbound(request: pb.RecordOutboundRequest) -> Participants:
    ids.tenant_id(request.tenant_id)
    storable_text(request.body, "body")
    idempotency_key(request.idempotency_key)
    sender = _number(request.sender_number, "sender_number")
    customer = _number(request.customer_number, "customer_number")
    _bounded(request.body, "body", MAX_BODY)
    _media(request.media, "media")
    if request.HasField("template"):
        ids.twilio_sid(request.template.content_sid, field="template.content_sid", prefixes=("HX",))
    if not (request.body or request.media or request.HasField("template")):
        raise InvalidArgument("body, media and template are all empty", field="body")
    if request.replied_to_sid:
        ids.twilio_sid(request.replied_to_sid, field="replied_to_sid")
    return Participants(sender, customer)


def participants(key: pb.ConversationKey, field: str = "participants") -> Participants:
    """The two numbers of a conversation, named ``<field>.sender_number`` and
    ``<field>.customer_number`` when refused."""
    return Participants(
        sender_number=_number(key.sender_number, f"{field}.sender_number"),
        customer_number=_number(key.customer_number, f"{field}.customer_number"),
    )


def opt_out(request: pb.SetOptOutRequest) -> Participants:
    ids.tenant_id(request.tenant_id)
    bounded_text(request.reason, "reason")
    return participants(request.participants)


def idempotency_key(value: str) -> str:
    if not value.strip():
        raise InvalidArgument("is required", field="idempotency_key")
    storable_text(value, "idempotency_key")
    return _bounded(value, "idempotency_key", MAX_KEY)


def callback_status(status: pb.MessageStatus.ValueType, *, required: bool) -> None:
    if status == pb.MESSAGE_STATUS_UNSPECIFIED and not required:
        return
    if status not in OUTBOUND_STATUSES:
        raise InvalidArgument(
            "is not a delivery status of an outbound message (queued, sent, delivered, …)",
            field="status",
        )


def provider_sid(value: str, *, field: str = "provider_sid") -> str:
    return ids.twilio_sid(value, field=field)


def when(stamp: Timestamp, present: bool, *, field: str) -> datetime:
    """The time a request names in ``field``, or now; years outside 2000-2200 are refused
    as nonsense, naming ``field``."""
    if not present:
        return datetime.now(UTC)
    if not 946_684_800 <= stamp.seconds <= 7_258_118_400:
        raise InvalidArgument("is not a plausible time", field=field)
    return stamp.ToDatetime(tzinfo=UTC)


def page_size(value: int) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field="page_size")
    return min(value or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def conversation_id(value: str) -> str:
    if not value:
        raise InvalidArgument("is required", field="conversation_id")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument("is not a conversation id", field="conversation_id") from None


def number(value: str, field: str) -> str:
    return _number(value, field)


def _number(value: str, field: str) -> str:
    if not value.strip():
        raise InvalidArgument("is required", field=field)
    return normalize_number(value, field=field)


def _media(media: Iterable[content_pb2.Media], field: str) -> None:
    items = list(media)
    if len(items) > MAX_MEDIA:
        raise InvalidArgument(f"at most {MAX_MEDIA} attachments", field=field)
    for index, item in enumerate(items):
        if not item.url:
            raise InvalidArgument("is required", field=f"{field}[{index}].url")
        _bounded(item.url, f"{field}[{index}].url", MAX_TEXT)
        _bounded(item.content_type, f"{field}[{index}].content_type", 255)


def bounded_text(value: str, field: str) -> str:
    return storable_text(_bounded(value, field, MAX_TEXT), field)


def _bounded(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(f"must be at most {limit} characters", field=field)
    return value
