"""Checks of what callers send: each failure names its field, before anything is stored.

A batch names the job too (``jobs[3].recipient_number``), so a caller of EnqueueBatch can
tell which of its 500 jobs to fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from wamesh.common.v1 import content_pb2
from wamesh.dispatch.v1 import dispatch_pb2 as pb
from wamesh_dispatcher.store import NewJob, Template
from wamesh_kit.errors import InvalidArgument
from wamesh_kit.numbers import normalize_number

# Twilio's limit for a WhatsApp message body.
MAX_BODY = 1600
# Twilio takes at most 10 media URLs per message.
MAX_MEDIA = 10
MAX_URL = 2048
MAX_CONTENT_TYPE = 255
MAX_KEY = 200
MAX_ID = 200
MAX_VARIABLES = 100
MAX_VARIABLE = 1024
MAX_BATCH = 500
MAX_JOB_IDS = 1000
# Further ahead is almost surely a unit mistake (ms for s), not a plan.
MAX_AHEAD = timedelta(days=30)
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
PRIORITIES: Mapping[int, str] = {
    pb.PRIORITY_UNSPECIFIED: "interactive",
    pb.PRIORITY_INTERACTIVE: "interactive",
    pb.PRIORITY_BULK: "bulk",
}


def text(value: str, field: str, limit: int = MAX_ID) -> str:
    if not value.strip():
        raise InvalidArgument("is required", field=field)
    if len(value) > limit:
        raise InvalidArgument(f"is longer than {limit} characters", field=field)
    return value


def number(value: str, field: str) -> str:
    """E.164; a "whatsapp:" prefix (Twilio's spelling) is accepted and dropped."""
    text(value, field)
    return normalize_number(value, field=field)


def optional_number(value: str, field: str) -> str:
    return number(value, field) if value.strip() else ""


def page_size(value: int, default: int = 50, most: int = 500) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field="page_size")
    return min(value or default, most)


def error_code(value: int, field: str = "error_code") -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field=field)
    return value


def job_ids(values: Sequence[str], field: str = "job_ids") -> list[str]:
    if len(values) > MAX_JOB_IDS:
        raise InvalidArgument(f"lists more than {MAX_JOB_IDS} jobs", field=field)
    return [text(value, field) for value in values]


def batch_size(count: int) -> None:
    if count == 0:
        raise InvalidArgument("holds no job", field="jobs")
    if count > MAX_BATCH:
        raise InvalidArgument(f"holds more than {MAX_BATCH} jobs", field="jobs")


def template(value: content_pb2.ContentTemplate, field: str) -> Template:
    if not _CONTENT_SID.fullmatch(value.content_sid):
        raise InvalidArgument('must be "HX" and 32 hex digits', field=f"{field}.content_sid")
    if len(value.variables) > MAX_VARIABLES:
        raise InvalidArgument(f"holds more than {MAX_VARIABLES}", field=f"{field}.variables")
    for key, item in value.variables.items():
        if not key or len(key) > MAX_ID or len(item) > MAX_VARIABLE:
            raise InvalidArgument(
                f"keys are 1 to {MAX_ID} characters, values at most {MAX_VARIABLE}",
                field=f"{field}.variables",
            )
    return Template(value.content_sid, dict(value.variables))


def media(values: Sequence[content_pb2.Media], field: str) -> tuple[tuple[str, str], ...]:
    if len(values) > MAX_MEDIA:
        raise InvalidArgument(f"holds more than {MAX_MEDIA} items", field=field)
    checked = []
    for index, item in enumerate(values):
        url = item.url.strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > MAX_URL:
            raise InvalidArgument(
                f"must be an http(s) URL of at most {MAX_URL} characters",
                field=f"{field}[{index}].url",
            )
        if len(item.content_type) > MAX_CONTENT_TYPE:
            raise InvalidArgument("is too long", field=f"{field}[{index}].content_type")
        checked.append((url, item.content_type))
    return tuple(checked)


def not_before(request: pb.EnqueueRequest, now: datetime, field: str) -> datetime | None:
    if not request.HasField("not_before"):
        return None
    at = request.not_before.ToDatetime(tzinfo=UTC)
    if at > now + MAX_AHEAD:
        raise InvalidArgument(f"is more than {MAX_AHEAD.days} days ahead", field=field)
    return at


def priority(value: int, field: str) -> str:
    name = PRIORITIES.get(value)
    if name is None:
        raise InvalidArgument("is not a priority", field=field)
    return name


def derived_key(
    recipient: str,
    body: str,
    attached: Sequence[tuple[str, str]],
    content: Template | None,
    now: datetime,
) -> str:
    """The same message to the same recipient within one clock hour gets the same key, so an
    accidental repeat (a double click, a redelivered event without a key) is dropped."""
    parts = {
        "to": recipient,
        "body": body,
        "media": [url for url, _ in attached],
        "template": None if content is None else [content.content_sid, content.variables],
        "hour": now.astimezone(UTC).strftime("%Y-%m-%dT%H"),
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return f"derived:{digest}"


def job(request: pb.EnqueueRequest, now: datetime, prefix: str = "") -> NewJob:
    """``request`` as a job to record; its sender is left empty when the caller wants the
    tenant's default (only the tenants service knows it). ``prefix`` names the job in a
    batch: ``jobs[3].``."""
    tenant_id = text(request.tenant_id, f"{prefix}tenant_id")
    recipient = number(request.recipient_number, f"{prefix}recipient_number")
    sender = optional_number(request.sender_number, f"{prefix}sender_number")
    if len(request.body) > MAX_BODY:
        raise InvalidArgument(f"is longer than {MAX_BODY} characters", field=f"{prefix}body")
    body = request.body if request.body.strip() else ""
    attached = media(request.media, f"{prefix}media")
    content = None
    if request.HasField("template"):
        if body or attached:
            raise InvalidArgument(
                "is set beside a body or media: send one kind of content",
                field=f"{prefix}template",
            )
        content = template(request.template, f"{prefix}template")
    elif not body and not attached:
        raise InvalidArgument("a body, media or a template is required", field=f"{prefix}body")
    fallback = (
        template(request.fallback_template, f"{prefix}fallback_template")
        if request.HasField("fallback_template")
        else None
    )
    key = request.idempotency_key
    if key:
        text(key, f"{prefix}idempotency_key", MAX_KEY)
    elif request.derive_idempotency_key:
        key = derived_key(recipient, body, attached, content, now)
    else:
        raise InvalidArgument(
            "is required (or set derive_idempotency_key)", field=f"{prefix}idempotency_key"
        )
    return NewJob(
        tenant_id=tenant_id,
        idempotency_key=key,
        sender_number=sender,
        recipient_number=recipient,
        body=body,
        media=attached,
        template=content,
        fallback_template=fallback,
        priority=priority(request.priority, f"{prefix}priority"),
        not_before=not_before(request, now, f"{prefix}not_before"),
        despite_opt_out=request.despite_opt_out,
    )
