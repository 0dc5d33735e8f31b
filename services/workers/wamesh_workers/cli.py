"""``wamesh workers ...`` and ``wamesh sessions ...``: the registry's admin API from a terminal.

Every command calls the running service over gRPC (``WAMESH_WORKERS_TARGET``) with the
admin token (``WAMESH_ADMIN_TOKEN``); ``assign`` and ``release`` are also what an operator
uses to move a session by hand.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Annotated, Any

import qrcode  # type: ignore[import-untyped]
import typer
from rich.console import Console

from wamesh.workers.v1 import workers_pb2 as pb
from wamesh.workers.v1 import workers_pb2_grpc
from wamesh_kit.rpc.cli import AsJson, call, message_json, print_messages
from wamesh_kit.settings import DEV_ADMIN_TOKEN

workers_app = typer.Typer(help="Session workers: list, inspect, drain.", no_args_is_help=True)
sessions_app = typer.Typer(
    help="Sessions: where each lives, move or release one, its login QR code.",
    no_args_is_help=True,
)
_out = Console()

Target = Annotated[
    str, typer.Option(envvar="WAMESH_WORKERS_TARGET", help="the workers service, host:port")
]
AdminToken = Annotated[
    str, typer.Option(envvar="WAMESH_ADMIN_TOKEN", help="admin token", show_default=False)
]
DEFAULT_TARGET = "127.0.0.1:50055"
_STATES = {
    "active": pb.WORKER_STATE_ACTIVE,
    "draining": pb.WORKER_STATE_DRAINING,
    "lost": pb.WORKER_STATE_LOST,
    "gone": pb.WORKER_STATE_GONE,
}


def _call(target: str, token: str, method: Callable[[Any], Any]) -> Any:
    return call(target, token, lambda channel: method(workers_pb2_grpc.WorkerRegistryStub(channel)))


_WORKER_COLUMNS: dict[str, Callable[[Any], str]] = {
    "id": lambda w: w.id,
    "kind": lambda w: w.kind,
    "state": lambda w: pb.WorkerState.Name(w.state).removeprefix("WORKER_STATE_").lower(),
    "sessions": lambda w: f"{w.session_count}/{w.capacity}",
    "load": lambda w: f"{w.load:.2f}",
    "endpoint": lambda w: w.endpoint,
    "instance": lambda w: w.instance_id,
}
_SESSION_COLUMNS: dict[str, Callable[[Any], str]] = {
    "id": lambda s: s.id,
    "tenant": lambda s: s.tenant_id,
    "kind": lambda s: s.kind,
    "state": lambda s: pb.SessionState.Name(s.state).removeprefix("SESSION_STATE_").lower(),
    "worker": lambda s: s.worker_id or "-",
    "epoch": lambda s: str(s.epoch),
}


@workers_app.command("list")
def list_workers(
    kind: Annotated[str, typer.Option(help="only this kind")] = "",
    state: Annotated[str, typer.Option(help="active, draining, lost or gone")] = "",
    page_size: Annotated[int, typer.Option(help="workers per page")] = 100,
    page_token: Annotated[str, typer.Option(help="from a previous page")] = "",
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Workers, by id."""
    if state and state not in _STATES:
        raise typer.BadParameter(f"must be one of {', '.join(_STATES)}", param_hint="--state")
    request = pb.ListWorkersRequest(
        kind=kind,
        state=_STATES.get(state, pb.WORKER_STATE_UNSPECIFIED),
        page_size=page_size,
        page_token=page_token,
    )
    response = _call(target, token, lambda stub: stub.ListWorkers(request))
    print_messages(list(response.workers), _WORKER_COLUMNS, as_json, "workers")
    if response.next_page_token and not as_json:
        _out.print(f"next page: --page-token {response.next_page_token}")


@workers_app.command()
def show(
    worker_id: Annotated[str, typer.Argument(help="worker id")],
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """One worker and the sessions it holds."""
    listed = _call(
        target, token, lambda stub: stub.ListWorkers(pb.ListWorkersRequest(page_size=500))
    )
    found = [w for w in listed.workers if w.id == worker_id]
    if not found:
        typer.echo(f"NOT_FOUND: worker_id: no such worker {worker_id!r}", err=True)
        raise typer.Exit(1)
    held = _call(
        target,
        token,
        lambda stub: stub.ListSessions(pb.ListSessionsRequest(worker_id=worker_id, page_size=500)),
    )
    if as_json:
        body = {
            "worker": message_json(found[0]),
            "sessions": [message_json(s) for s in held.sessions],
        }
        typer.echo(json.dumps(body, indent=2))
        return
    print_messages(found, _WORKER_COLUMNS, False, "worker")
    print_messages(list(held.sessions), _SESSION_COLUMNS, False, "its sessions")


@workers_app.command()
def drain(
    worker_id: Annotated[str, typer.Argument(help="worker id")],
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Give the worker nothing new and move its sessions away."""
    response = _call(
        target, token, lambda stub: stub.DrainWorker(pb.DrainWorkerRequest(worker_id=worker_id))
    )
    print_messages([response.worker], _WORKER_COLUMNS, as_json, "drained")


@sessions_app.command("list")
def list_sessions(
    tenant_id: Annotated[str, typer.Option(help="only this tenant's")] = "",
    worker_id: Annotated[str, typer.Option(help="only this worker's")] = "",
    kind: Annotated[str, typer.Option(help="only this kind")] = "",
    page_size: Annotated[int, typer.Option(help="sessions per page")] = 100,
    page_token: Annotated[str, typer.Option(help="from a previous page")] = "",
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Sessions, by id."""
    request = pb.ListSessionsRequest(
        tenant_id=tenant_id,
        worker_id=worker_id,
        kind=kind,
        page_size=page_size,
        page_token=page_token,
    )
    response = _call(target, token, lambda stub: stub.ListSessions(request))
    print_messages(list(response.sessions), _SESSION_COLUMNS, as_json, "sessions")
    if response.next_page_token and not as_json:
        _out.print(f"next page: --page-token {response.next_page_token}")


@sessions_app.command("show")
def show_session(
    session_id: Annotated[str, typer.Argument(help="session id")],
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Where a session lives now: its worker, endpoint and epoch."""
    route = _call(
        target, token, lambda stub: stub.RouteSession(pb.RouteSessionRequest(session_id=session_id))
    )
    if as_json:
        typer.echo(json.dumps(message_json(route), indent=2))
        return
    _out.print(f"{session_id}: worker {route.worker_id} at {route.endpoint}, epoch {route.epoch}")


@sessions_app.command("assign")
def assign(
    session_id: Annotated[str, typer.Argument(help="session id, e.g. twilio:{tenant}:{number}")],
    tenant_id: Annotated[str, typer.Option(help="the session's tenant")],
    kind: Annotated[str, typer.Option(help="the worker kind that serves it")] = "twilio",
    worker_id: Annotated[
        str, typer.Option(help="move it to this worker (empty: the registry picks)")
    ] = "",
    expected_epoch: Annotated[int, typer.Option(help="only if still at this epoch (0: any)")] = 0,
    label: Annotated[
        list[str] | None, typer.Option(help="a required label key=value (repeat)")
    ] = None,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Create a session and place it, or move it to a worker."""
    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter("must be key=value", param_hint="--label")
        labels[key] = value
    request = pb.AssignSessionRequest(
        session_id=session_id,
        tenant_id=tenant_id,
        kind=kind,
        worker_id=worker_id,
        expected_epoch=expected_epoch,
        required_labels=labels,
    )
    response = _call(target, token, lambda stub: stub.AssignSession(request))
    print_messages([response.session], _SESSION_COLUMNS, as_json, "session")


@sessions_app.command("release")
def release(
    session_id: Annotated[str, typer.Argument(help="session id")],
    expected_epoch: Annotated[int, typer.Option(help="only if still at this epoch (0: any)")] = 0,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
) -> None:
    """End a session: its worker is told to stop, and it is forgotten."""
    request = pb.ReleaseSessionRequest(session_id=session_id, expected_epoch=expected_epoch)
    _call(target, token, lambda stub: stub.ReleaseSession(request))
    _out.print(f"{session_id}: released")


def terminal_qr(payload: str) -> str:
    """The payload as a QR code of text blocks a phone can scan off the terminal."""
    code = qrcode.QRCode(border=2)
    code.add_data(payload)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


@sessions_app.command("qr")
def qr(
    session_id: Annotated[str, typer.Argument(help="session id")],
    tenant_id: Annotated[str, typer.Option(help="the session's tenant")],
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """The session's current login QR code, to scan with WhatsApp."""
    request = pb.GetQrCodeRequest(tenant_id=tenant_id, session_id=session_id)
    response = _call(target, token, lambda stub: stub.GetQrCode(request))
    if as_json:
        typer.echo(json.dumps(message_json(response), indent=2))
        return
    typer.echo(terminal_qr(response.qr_payload))
    typer.echo(f"expires at {response.expires_at.ToDatetime().isoformat()}Z")
