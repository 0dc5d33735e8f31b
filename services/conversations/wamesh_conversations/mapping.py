"""Stored rows as the contract's messages, and message content in its stored form.

A message's content other than its body (media, location, buttons, template, inbound
details) is one serialized ``pb.Message`` in ``content``, and its history another holding
only ``status_history`` (see schema.py): both parse back by concatenation, which protobuf
merges into one message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh_kit.timestamps import timestamp


def message_of(row: sa.RowMapping) -> pb.Message:
    """A ``messages`` row as the contract's Message."""
    return message_from(
        bytes(row["content"]) + bytes(row["status_history"]),
        id=row["id"],
        tenant_id=row["tenant_id"],
        conversation_id=row["conversation_id"],
        direction=row["direction"],
        status=row["status"],
        body=row["body"],
        provider_sid=row["provider_sid"] or "",
        idempotency_key=row["idempotency_key"] or "",
        error_code=row["error_code"],
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def message_from(
    serialized: bytes, *, created_at: datetime, updated_at: datetime, **fields: Any
) -> pb.Message:
    """The Message of stored content and history (``serialized``, concatenated) and the
    columns ``fields`` names: what a row holds, without reading the row back."""
    message = pb.Message.FromString(serialized)
    for name, value in fields.items():
        setattr(message, name, value)
    message.created_at.CopyFrom(timestamp(created_at))
    message.updated_at.CopyFrom(timestamp(updated_at))
    return message


def conversation_of(row: sa.RowMapping) -> pb.Conversation:
    """A ``conversations`` row as the contract's Conversation."""
    conversation = pb.Conversation(
        id=row["id"],
        tenant_id=row["tenant_id"],
        customer_number=row["customer_number"],
        sender_number=row["sender_number"],
        profile_name=row["profile_name"],
        last_message_at=timestamp(row["last_message_at"]),
        unread_count=row["unread_count"],
        created_at=timestamp(row["created_at"]),
        opted_out=row["opted_out_at"] is not None,
    )
    if row["window_open_until"] is not None:
        conversation.window_open_until.CopyFrom(timestamp(row["window_open_until"]))
    return conversation


def inbound_content(inbound: pb.InboundMessage, rate_limited: bool) -> bytes:
    """The ``content`` column of an inbound message."""
    content = pb.Message(
        media=inbound.media,
        button_text=inbound.button_text,
        button_payload=inbound.button_payload,
        replied_to_sid=inbound.original_replied_message_sid,
        inbound=pb.InboundDetails(
            account_sid=inbound.account_sid,
            messaging_service_sid=inbound.messaging_service_sid,
            profile_name=inbound.profile_name,
            wa_id=inbound.wa_id,
            message_type=inbound.message_type,
            referral=inbound.referral if inbound.HasField("referral") else None,
            extra_fields=inbound.extra_fields,
            rate_limited=rate_limited,
        ),
    )
    if inbound.HasField("location"):
        content.location.CopyFrom(inbound.location)
    return content.SerializeToString()


def outbound_content(request: pb.RecordOutboundRequest) -> bytes:
    """The ``content`` column of an outbound message."""
    content = pb.Message(
        media=request.media, replied_to_sid=request.replied_to_sid
    ).SerializeToString()
    if request.HasField("template"):
        content += pb.Message(template=request.template).SerializeToString()
    return content
