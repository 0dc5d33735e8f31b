"""What the services' command groups share: one RPC (a failure printed as its status and
message, exit 1), and messages printed as a table or as JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import grpc
import grpc.aio
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.errors import domain_error_from_rpc_error

_err = Console(stderr=True)
_out = Console()


def call(target: str, token: str, method: Callable[[grpc.aio.Channel], Any]) -> Any:
    """Run ``method(channel)``, an awaitable RPC, against ``target`` with ``token``.

    (The generated stubs type calls as sync-or-async unions, hence ``Any``.)
    """

    async def run() -> Any:
        async with make_channel(target, token=token) as channel:
            return await method(channel)

    try:
        return asyncio.run(run())
    except grpc.aio.AioRpcError as error:
        raise rpc_failure(error) from None


def rpc_failure(error: grpc.aio.AioRpcError) -> typer.Exit:
    """Prints a failed call as its status and message; the exit (1) to raise for it."""
    domain_error = domain_error_from_rpc_error(error)
    message = str(domain_error) if domain_error is not None else error.details() or ""
    _err.print(f"[red]{error.code().name}[/red]: {escape(message)}", highlight=False)
    return typer.Exit(1)


AsJson = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]
Columns = dict[str, Callable[[Any], str]]


def message_json(message: Message) -> dict[str, Any]:
    """A message as the JSON a command prints (field names as in the contract)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def print_messages(
    messages: Sequence[Message], columns: Columns, as_json: bool, title: str
) -> None:
    """``messages`` as a JSON list, or as a table of ``columns`` (header → cell)."""
    if as_json:
        typer.echo(json.dumps([message_json(m) for m in messages], indent=2))
        return
    table = Table(title=title)
    for name in columns:
        table.add_column(name)
    for message in messages:
        table.add_row(*(show(message) for show in columns.values()))
    _out.print(table)
