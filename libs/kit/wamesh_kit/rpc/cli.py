"""One RPC from a command-line tool: a failure is printed as its status and message, exit 1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import typer
from rich.console import Console
from rich.markup import escape

from wamesh_kit.rpc.client import make_channel
from wamesh_kit.rpc.errors import domain_error_from_rpc_error

_err = Console(stderr=True)


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
        domain_error = domain_error_from_rpc_error(error)
        message = str(domain_error) if domain_error is not None else error.details() or ""
        _err.print(f"[red]{error.code().name}[/red]: {escape(message)}", highlight=False)
        raise typer.Exit(1) from None
