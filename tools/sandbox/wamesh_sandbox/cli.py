"""``wamesh dev sandbox``: serve the sandbox, or drive a running one through its admin API."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from wamesh_sandbox.settings import DEV_SENDER, SandboxSettings

sandbox_app = typer.Typer(
    help="The local Twilio (not Twilio; never used by default in a cluster). "
    "With no command: serve it.",
    invoke_without_command=True,
)
Url = Annotated[
    str | None, typer.Option(help="the running sandbox (default: WAMESH_SANDBOX_LISTEN)")
]


@sandbox_app.callback()
def serve(context: typer.Context) -> None:
    if context.invoked_subcommand is None:
        from wamesh_sandbox.__main__ import main

        main()


def _call(
    url: str | None, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
) -> Any:
    base = url or f"http://{SandboxSettings().listen}"
    try:
        response = httpx.request(method, base + path, json=body, params=params, timeout=30)
    except httpx.HTTPError as error:
        typer.echo(f"cannot reach the sandbox at {base}: {error}", err=True)
        raise typer.Exit(1) from None
    if response.status_code >= 400:
        typer.echo(response.text, err=True)
        raise typer.Exit(1)
    return response.json() if response.content else None


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


@sandbox_app.command()
def inbound(
    from_: Annotated[str, typer.Option("--from", help="the customer, whatsapp:+E164")],
    body: Annotated[str, typer.Option(help="what the customer writes")] = "",
    to: Annotated[str, typer.Option(help="the sender number written to")] = DEV_SENDER,
    media: Annotated[list[str] | None, typer.Option(help="a media URL (repeat)")] = None,
    webhook_url: Annotated[
        str | None, typer.Option(help="post here instead of the sender's webhook URL")
    ] = None,
    url: Url = None,
) -> None:
    """Act as a customer: post the signed webhook Twilio would, print the answer."""
    spec: dict[str, Any] = {
        "from": from_,
        "to": to,
        "body": body,
        "media": [{"url": m} for m in media or []],
    }
    if webhook_url:
        spec["webhook_url"] = webhook_url
    _print(_call(url, "POST", "/sandbox/inbound", spec))


@sandbox_app.command()
def fault(
    account_sid: Annotated[str, typer.Option(help="the account whose creates meet it")],
    code: Annotated[int | None, typer.Option(help="the Twilio error code to answer")] = None,
    status: Annotated[
        int | None, typer.Option(help="its HTTP status (default: the code's)")
    ] = None,
    count: Annotated[int, typer.Option(help="how many creates meet it (0: all until cleared)")] = 1,
    sender: Annotated[str | None, typer.Option(help="only creates from this sender")] = None,
    recipient: Annotated[str | None, typer.Option(help="only creates to this recipient")] = None,
    latency_ms: Annotated[float, typer.Option(help="wait this long first")] = 0.0,
    latency_max_ms: Annotated[float | None, typer.Option(help="uniform up to this")] = None,
    reset: Annotated[str | None, typer.Option(help="'before' or 'after' recording")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="accept, then end 'failed'/'undelivered'")
    ] = None,
    url: Url = None,
) -> None:
    """Add a fault: the next creates of an account fail, stall or lose their answer."""
    spec: dict[str, Any] = {
        "account_sid": account_sid,
        "count": count or None,
        "sender": sender,
        "recipient": recipient,
        "code": code,
        "status": status,
        "latency_ms": latency_ms,
        "latency_max_ms": latency_max_ms,
        "reset": reset,
        "outcome": outcome,
    }
    _print(_call(url, "POST", "/sandbox/faults", spec))


@sandbox_app.command("rate-limit")
def rate_limit(
    account_sid: Annotated[str, typer.Option(help="the account")],
    per_second: Annotated[float, typer.Option(help="creates a second per sender before 429")],
    sender: Annotated[str | None, typer.Option(help="only this sender")] = None,
    url: Url = None,
) -> None:
    """Answer 429 / 20429 past this many creates a second per sender."""
    spec = {"account_sid": account_sid, "per_second": per_second, "sender": sender}
    _print(_call(url, "PUT", "/sandbox/rate-limits", spec))


@sandbox_app.command()
def faults(
    clear: Annotated[bool, typer.Option(help="remove every fault and rate limit")] = False,
    url: Url = None,
) -> None:
    """List the faults and rate limits (or clear them)."""
    _print(_call(url, "DELETE" if clear else "GET", "/sandbox/faults"))


@sandbox_app.command()
def messages(
    to: Annotated[str | None, typer.Option(help="only to this recipient")] = None,
    url: Url = None,
) -> None:
    """What the sandbox was asked to send, oldest first, with each one's statuses."""
    _print(_call(url, "GET", "/sandbox/messages", params={"to": to} if to else None))
