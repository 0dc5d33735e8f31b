"""``wamesh queue ...``, ``wamesh dlq ...`` and ``wamesh send``: the dispatcher from a terminal.

Every command calls the running service over gRPC (``WAMESH_DISPATCHER_TARGET``). The queue
and dead-letter commands use the admin token (``WAMESH_ADMIN_TOKEN``); ``send`` enqueues as
the mesh's services do, with the internal token (``WAMESH_INTERNAL_TOKEN``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console

from wamesh.common.v1 import content_pb2
from wamesh.dispatch.v1 import dispatch_pb2 as pb
from wamesh.dispatch.v1 import dispatch_pb2_grpc
from wamesh_kit.rpc.cli import AsJson, call, message_json, print_messages
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN

queue_app = typer.Typer(help="Outbound queues: depth per sender or tenant.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead letters: jobs out of attempts. List, show, retry, purge.", no_args_is_help=True
)
send_app = typer.Typer(help="Enqueue one outbound message (operators).")
_out = Console()

Target = Annotated[
    str, typer.Option(envvar="WAMESH_DISPATCHER_TARGET", help="the dispatcher, host:port")
]
AdminToken = Annotated[
    str, typer.Option(envvar="WAMESH_ADMIN_TOKEN", help="admin token", show_default=False)
]
InternalToken = Annotated[
    str, typer.Option(envvar="WAMESH_INTERNAL_TOKEN", help="internal token", show_default=False)
]
TenantId = Annotated[str, typer.Option(help="the tenant")]
Sender = Annotated[str, typer.Option("--sender", help="only this sender number")]
ErrorCode = Annotated[int, typer.Option(help="only jobs whose last Twilio error was this")]
DEFAULT_TARGET = "127.0.0.1:50054"


def _call(target: str, token: str, method: Callable[[Any], Any]) -> Any:
    return call(target, token, lambda channel: method(dispatch_pb2_grpc.DispatcherStub(channel)))


def _when(stamp: Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=UTC).isoformat(timespec="seconds") if stamp.seconds else "-"


def _state(job: pb.Job) -> str:
    return pb.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()


_STATS_COLUMNS: dict[str, Callable[[Any], str]] = {
    "tenant": lambda s: s.tenant_id,
    "sender": lambda s: s.sender_number or "(all)",
    "pending": lambda s: str(s.pending),
    "in flight": lambda s: str(s.in_flight),
    "retrying": lambda s: str(s.retrying),
    "sent": lambda s: str(s.sent),
    "failed": lambda s: str(s.failed),
    "dead": lambda s: str(s.dead),
    "oldest pending": lambda s: _when(s.oldest_pending_at),
}
_JOB_COLUMNS: dict[str, Callable[[Any], str]] = {
    "id": lambda j: j.id,
    "tenant": lambda j: j.tenant_id,
    "sender": lambda j: j.sender_number,
    "to": lambda j: j.recipient_number,
    "state": _state,
    "attempts": lambda j: str(j.attempts),
    "error": lambda j: (
        f"{j.last_error_code} {j.last_error_message}".strip() if j.last_error_code else "-"
    ),
    "dead at": lambda j: _when(j.dead_at),
}
_ATTEMPT_COLUMNS: dict[str, Callable[[Any], str]] = {
    "#": lambda a: str(a.number),
    "started": lambda a: _when(a.started_at),
    "outcome": lambda a: a.outcome,
    "error": lambda a: f"{a.error_code} {a.error_message}".strip() if a.error_code else "-",
    "sid": lambda a: a.provider_sid or "-",
}


@queue_app.command()
def stats(
    tenant_id: Annotated[
        str, typer.Option(help="per sender of this tenant (empty: per tenant)")
    ] = "",
    sender: Sender = "",
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Jobs by state, per sender of a tenant or per tenant."""
    request = pb.GetQueueStatsRequest(tenant_id=tenant_id, sender_number=sender)
    response = _call(target, token, lambda stub: stub.GetQueueStats(request))
    print_messages(list(response.stats), _STATS_COLUMNS, as_json, "queues")


@dlq_app.command("list")
def list_dead(
    tenant_id: Annotated[str, typer.Option(help="only this tenant's (empty: every tenant)")] = "",
    sender: Sender = "",
    error_code: ErrorCode = 0,
    page_size: Annotated[int, typer.Option(help="jobs per page")] = 50,
    page_token: Annotated[str, typer.Option(help="from a previous page")] = "",
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Dead jobs, most recently dead first."""
    request = pb.ListDeadLettersRequest(
        tenant_id=tenant_id,
        sender_number=sender,
        error_code=error_code,
        page_size=page_size,
        page_token=page_token,
    )
    response = _call(target, token, lambda stub: stub.ListDeadLetters(request))
    print_messages(list(response.jobs), _JOB_COLUMNS, as_json, "dead letters")
    if response.next_page_token and not as_json:
        _out.print(f"next page: --page-token {response.next_page_token}")


@dlq_app.command()
def show(
    job_id: Annotated[str, typer.Argument(help="job id")],
    tenant_id: TenantId,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """One job and every attempt made for it."""
    request = pb.GetJobRequest(tenant_id=tenant_id, job_id=job_id)
    job = _call(target, token, lambda stub: stub.GetJob(request)).job
    if as_json:
        typer.echo(json.dumps(message_json(job), indent=2))
        return
    print_messages([job], _JOB_COLUMNS, False, "job")
    print_messages(list(job.attempt_history), _ATTEMPT_COLUMNS, False, "attempts")


@dlq_app.command()
def retry(
    tenant_id: TenantId,
    job_ids: Annotated[
        list[str] | None, typer.Argument(help="only these jobs (none: all matching)")
    ] = None,
    sender: Sender = "",
    error_code: ErrorCode = 0,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Queue dead jobs again with fresh attempts (their history kept)."""
    request = pb.RetryDeadLettersRequest(
        tenant_id=tenant_id, job_ids=job_ids or [], sender_number=sender, error_code=error_code
    )
    response = _call(target, token, lambda stub: stub.RetryDeadLetters(request))
    if as_json:
        typer.echo(json.dumps({"retried_count": response.retried_count}))
        return
    _out.print(f"{response.retried_count} job(s) queued again")


@dlq_app.command()
def purge(
    tenant_id: TenantId,
    job_ids: Annotated[
        list[str] | None, typer.Argument(help="only these jobs (none: all matching)")
    ] = None,
    sender: Sender = "",
    error_code: ErrorCode = 0,
    dead_before: Annotated[
        datetime | None, typer.Option(help="only jobs dead before this (ISO 8601, UTC if naive)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Delete dead jobs for good."""
    if not yes:
        typer.confirm(f"Delete {tenant_id}'s matching dead letters for good?", abort=True)
    request = pb.PurgeDeadLettersRequest(
        tenant_id=tenant_id, job_ids=job_ids or [], sender_number=sender, error_code=error_code
    )
    if dead_before is not None:
        at = dead_before if dead_before.tzinfo else dead_before.replace(tzinfo=UTC)
        request.dead_before.FromDatetime(at)
    response = _call(target, token, lambda stub: stub.PurgeDeadLetters(request))
    if as_json:
        typer.echo(json.dumps({"purged_count": response.purged_count}))
        return
    _out.print(f"{response.purged_count} job(s) purged")


def _variables(items: Sequence[str]) -> dict[str, str]:
    variables = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter("must be name=value", param_hint="--var")
        variables[key] = value
    return variables


@send_app.callback(invoke_without_command=True)
def send(
    tenant_id: TenantId,
    to: Annotated[str, typer.Option(help="the recipient, E.164")],
    body: Annotated[str, typer.Option(help="the text")] = "",
    sender: Annotated[str, typer.Option(help="one of the tenant's numbers (empty: default)")] = "",
    media: Annotated[list[str] | None, typer.Option(help="a media URL (repeat)")] = None,
    template: Annotated[str, typer.Option(help="a Content SID (HX...) instead of a body")] = "",
    var: Annotated[list[str] | None, typer.Option(help="a template variable name=value")] = None,
    key: Annotated[
        str, typer.Option(help="idempotency key (empty: derived from recipient, content, hour)")
    ] = "",
    bulk: Annotated[bool, typer.Option("--bulk", help="after interactive messages")] = False,
    target: Target = DEFAULT_TARGET,
    token: InternalToken = DEV_INTERNAL_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Enqueue one message; a repeat (same key) shows the job already queued."""
    request = pb.EnqueueRequest(
        tenant_id=tenant_id,
        recipient_number=to,
        sender_number=sender,
        body=body,
        media=[content_pb2.Media(url=url) for url in media or []],
        idempotency_key=key,
        derive_idempotency_key=not key,
        priority=pb.PRIORITY_BULK if bulk else pb.PRIORITY_INTERACTIVE,
    )
    if template:
        request.template.CopyFrom(
            content_pb2.ContentTemplate(content_sid=template, variables=_variables(var or []))
        )
    response = _call(target, token, lambda stub: stub.Enqueue(request))
    if as_json:
        typer.echo(json.dumps(message_json(response), indent=2))
        return
    print_messages(
        [response.job],
        _JOB_COLUMNS,
        False,
        "already queued" if response.already_existed else "queued",
    )
