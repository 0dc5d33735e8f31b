"""Twilio's form-encoded webhooks, read into wamesh's messages. Bad input is a WebhookError
naming the form field, answered 400 before anything else happens.

Every field Twilio sends is kept: the known ones in their own places, the rest (and any
field Twilio adds later) in ``extra_fields``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus

from wamesh.common.v1.content_pb2 import Location, Media
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh_kit.errors import InvalidArgument
from wamesh_kit.ids import TWILIO_SID
from wamesh_kit.numbers import normalize_number

MAX_FIELD_CHARS = 16_384
MAX_MEDIA = 10
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

_REFERRAL = {
    "ReferralSourceUrl": "source_url",
    "ReferralSourceId": "source_id",
    "ReferralSourceType": "source_type",
    "ReferralHeadline": "headline",
    "ReferralBody": "body",
    "ReferralMediaId": "media_id",
    "ReferralMediaUrl": "media_url",
    "ReferralMediaContentType": "media_content_type",
    "ReferralCtwaClid": "ctwa_clid",
}
_SIMPLE = {
    "MessageSid": "message_sid",
    "AccountSid": "account_sid",
    "MessagingServiceSid": "messaging_service_sid",
    "From": "from_address",
    "To": "to_address",
    "Body": "body",
    "ProfileName": "profile_name",
    "WaId": "wa_id",
    "MessageType": "message_type",
    "ButtonText": "button_text",
    "ButtonPayload": "button_payload",
    "OriginalRepliedMessageSid": "original_replied_message_sid",
}
_LOCATION = ("Latitude", "Longitude", "Address", "Label")
_STATUSES = {
    "accepted": pb.MESSAGE_STATUS_ACCEPTED,
    "scheduled": pb.MESSAGE_STATUS_SCHEDULED,
    "queued": pb.MESSAGE_STATUS_QUEUED,
    "sending": pb.MESSAGE_STATUS_SENDING,
    "sent": pb.MESSAGE_STATUS_SENT,
    "delivered": pb.MESSAGE_STATUS_DELIVERED,
    "read": pb.MESSAGE_STATUS_READ,
    "failed": pb.MESSAGE_STATUS_FAILED,
    "undelivered": pb.MESSAGE_STATUS_UNDELIVERED,
    "canceled": pb.MESSAGE_STATUS_CANCELED,
}


class WebhookError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class Form(dict[str, str]):
    """A form's fields: as a dict, each name's last value; ``getlist`` (and ``getall``,
    which twilio's RequestValidator asks first) every value of a name, in order. A plain
    dict underneath, since reading fields is much of what ingress does per webhook, and a
    MultiDict's ``get`` and ``getlist`` are Python-level scans."""

    __slots__ = ("_repeated",)

    def __init__(self, pairs: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(pairs)
        self._repeated: dict[str, list[str]] = {}
        if len(self) < len(pairs):  # some name came more than once (e.g. several MediaUrl)
            for name, value in pairs:
                self._repeated.setdefault(name, []).append(value)

    def getlist(self, key: str) -> list[str]:
        every = self._repeated.get(key)
        if every is not None:
            return list(every)
        return [self[key]] if key in self else []

    def getall(self, key: str) -> list[str]:
        return self.getlist(key)


def parse_form(body: bytes) -> Form:
    """The form's fields, every value of a repeated name kept (the signature covers them all)."""
    try:
        pairs = _pairs(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WebhookError("body", "is not a UTF-8 form-encoded body") from None
    for name, value in pairs:
        if len(value) > MAX_FIELD_CHARS or len(name) > 256:
            raise WebhookError(name[:64], f"is longer than {MAX_FIELD_CHARS} characters")
        if "\x00" in name or "\x00" in value:
            raise WebhookError(name[:64], "holds a NUL character")
    return Form(pairs)


# name=value pairs joined by "&", each with exactly one "=": what Twilio sends.
_PLAIN_FORM = re.compile(r"[^&=]*=[^&=]*(?:&[^&=]*=[^&=]*)*")


def _pairs(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True, strict_parsing=True)``, in one unquoting
    of the whole body rather than one per name and value, since every webhook is parsed.
    The separators become NULs first, which a field may not hold; a body with a NUL,
    encoded or not, or of any other shape goes to parse_qsl itself."""
    if not text:
        return []
    if "\x00" in text or not _PLAIN_FORM.fullmatch(text):
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    pieces = unquote_plus(text.replace("&", "\x00").replace("=", "\x00"), errors="strict")
    names_and_values = pieces.split("\x00")
    if len(names_and_values) != 2 * (text.count("&") + 1):  # a decoded %00
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    return list(zip(names_and_values[::2], names_and_values[1::2], strict=True))


def required(form: Form, name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise WebhookError(name, "is required")
    return value


def message_sid(form: Form) -> str:
    value = required(form, "MessageSid")
    if not TWILIO_SID.fullmatch(value):
        raise WebhookError("MessageSid", "is not a Twilio SID")
    return value


def number(form: Form, name: str) -> str:
    """The E.164 number of a From/To field (``whatsapp:+1…``)."""
    try:
        return normalize_number(required(form, name), field=name)
    except InvalidArgument:
        raise WebhookError(name, "is not a phone number") from None


@dataclass(frozen=True)
class InboundWebhook:
    message: pb.InboundMessage
    customer_number: str
    sender_number: str


def inbound(form: Form) -> InboundWebhook:
    message_sid(form)
    customer, sender = number(form, "From"), number(form, "To")
    message = pb.InboundMessage(media=_media(form))
    for name, field in _SIMPLE.items():
        setattr(message, field, form.get(name, ""))
    if "Latitude" in form or "Longitude" in form:
        message.location.CopyFrom(_location(form))
    if any(name in form for name in _REFERRAL):
        for name, field in _REFERRAL.items():
            setattr(message.referral, field, form.get(name, ""))
    known = {*_SIMPLE, *_REFERRAL, *_LOCATION, "NumMedia"}
    for name in form:
        if name not in known and not name.startswith(("MediaUrl", "MediaContentType")):
            message.extra_fields[name] = "\n".join(form.getlist(name))
    return InboundWebhook(message, customer, sender)


@dataclass(frozen=True)
class StatusWebhook:
    message_sid: str
    status: pb.MessageStatus.ValueType | None  # None: a status wamesh has nothing to do with
    sender_number: str
    account_sid: str
    error_code: int
    error_message: str


def status(form: Form) -> StatusWebhook:
    sid = message_sid(form)
    raw_status = required(form, "MessageStatus").lower()
    error_code = form.get("ErrorCode", "").strip() or "0"
    if not error_code.isdigit() or len(error_code) > 9:
        raise WebhookError("ErrorCode", "is not a number")
    return StatusWebhook(
        message_sid=sid,
        status=_STATUSES.get(raw_status),
        sender_number=number(form, "From"),
        account_sid=form.get("AccountSid", ""),
        error_code=int(error_code),
        error_message=form.get("ErrorMessage", "") or form.get("ChannelStatusMessage", ""),
    )


def _media(form: Form) -> list[Media]:
    raw = form.get("NumMedia", "0").strip() or "0"
    if not raw.isdigit() or int(raw) > MAX_MEDIA:
        raise WebhookError("NumMedia", f"must be a number from 0 to {MAX_MEDIA}")
    media = []
    for index in range(int(raw)):
        url = form.get(f"MediaUrl{index}", "")
        if not url:
            raise WebhookError(f"MediaUrl{index}", "is missing though NumMedia counts it")
        media.append(Media(url=url, content_type=form.get(f"MediaContentType{index}", "")))
    return media


def _location(form: Form) -> Location:
    coordinates = []
    for name in ("Latitude", "Longitude"):
        try:
            value = float(form.get(name, ""))
        except ValueError:
            raise WebhookError(name, "is not a number") from None
        if not math.isfinite(value):
            raise WebhookError(name, "is not a number")
        coordinates.append(value)
    return Location(
        latitude=coordinates[0],
        longitude=coordinates[1],
        address=form.get("Address", ""),
        label=form.get("Label", ""),
    )
