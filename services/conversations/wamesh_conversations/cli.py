"""``wamesh conversations ...``: read a tenant's conversations from a terminal.

Calls the running service over gRPC (``WAMESH_CONVERSATIONS_TARGET``) with the admin token
(``WAMESH_ADMIN_TOKEN``) or a tenant token for that tenant.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import grpc.aio
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh.conversations.v1 import conversations_pb2_grpc
from wamesh_kit.rpc.cli import AsJson, call, message_json
from wamesh_kit.settings import DEV_ADMIN_TOKEN

conversations_app = typer.Typer(help="Conversations: list and read them.", no_args_is_help=True)
_out = Console()

Target = Annotated[
    str,
    typer.Option(envvar="WAMESH_CONVERSATIONS_TARGET", help="the conversations service"),
]
Token = Annotated[
    str, typer.Option(envvar="WAMESH_ADMIN_TOKEN", help="admin or tenant token", show_default=False)
]
TenantId = Annotated[str, typer.Argument(help="tenant id")]
PageSize = Annotated[int, typer.Option(help="rows per page")]
PageToken = Annotated[str, typer.Option(help="continue after a previous page")]
DEFAULT_TARGET = "127.0.0.1:50052"
_DIRECTION = {pb.DIRECTION_INBOUND: "in", pb.DIRECTION_OUTBOUND: "out"}


def _stub(channel: grpc.aio.Channel) -> conversations_pb2_grpc.ConversationStoreStub:
    return conversations_pb2_grpc.ConversationStoreStub(channel)


def _time(stamp: Any) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if stamp.seconds else "-"


@conversations_app.command("list")
def list_conversations(
    tenant_id: TenantId,
    unread: Annotated[bool, typer.Option(help="only conversations with unread messages")] = False,
    sender: Annotated[str, typer.Option(help="only this sender number's")] = "",
    page_size: PageSize = 50,
    page_token: PageToken = "",
    target: Target = DEFAULT_TARGET,
    token: Token = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """A tenant's conversations, newest activity first."""
    request = pb.ListConversationsRequest(
        tenant_id=tenant_id,
        unread_only=unread,
        sender_number=sender,
        page_size=page_size,
        page_token=page_token,
    )
    page = call(target, token, lambda channel: _stub(channel).ListConversations(request))
    if as_json:
        print(json.dumps(message_json(page)))
        return
    table = Table()
    for column in ("id", "customer", "name", "sender", "last message", "unread", "window until"):
        table.add_column(column)
    for c in page.conversations:
        table.add_row(
            c.id,
            c.customer_number,
            escape(c.profile_name),
            c.sender_number,
            _time(c.last_message_at),
            str(c.unread_count),
            _time(c.window_open_until),
        )
    _out.print(table)
    if page.next_page_token:
        _out.print(f"more: --page-token {page.next_page_token}")


@conversations_app.command()
def show(
    tenant_id: TenantId,
    conversation_id: Annotated[str, typer.Argument(help="conversation id")],
    page_size: PageSize = 50,
    page_token: PageToken = "",
    target: Target = DEFAULT_TARGET,
    token: Token = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """A conversation and its messages, newest first."""
    conversation = call(
        target,
        token,
        lambda channel: _stub(channel).GetConversation(
            pb.GetConversationRequest(tenant_id=tenant_id, conversation_id=conversation_id)
        ),
    ).conversation
    page = call(
        target,
        token,
        lambda channel: _stub(channel).ListMessages(
            pb.ListMessagesRequest(
                tenant_id=tenant_id,
                conversation_id=conversation_id,
                page_size=page_size,
                page_token=page_token,
            )
        ),
    )
    if as_json:
        print(json.dumps({"conversation": message_json(conversation), **message_json(page)}))
        return
    _out.print(
        f"{conversation.customer_number} ({escape(conversation.profile_name) or '?'}) ↔ "
        f"{conversation.sender_number}, {conversation.unread_count} unread"
    )
    table = Table()
    for column in ("time", "dir", "status", "body", "sid"):
        table.add_column(column)
    for m in page.messages:
        status = pb.MessageStatus.Name(m.status).removeprefix("MESSAGE_STATUS_").lower()
        if m.error_code:
            status += f" ({m.error_code})"
        body = m.body or (f"[{len(m.media)} media]" if m.media else "[no text]")
        table.add_row(
            _time(m.created_at),
            _DIRECTION.get(m.direction, "?"),
            status,
            escape(body),
            m.provider_sid or "-",
        )
    _out.print(table)
    if page.next_page_token:
        _out.print(f"more: --page-token {page.next_page_token}")
