"""``wamesh tenants ...``: the tenant registry's admin API from a terminal.

Every command but ``rotate-key`` calls the running service over gRPC with the admin token
(``WAMESH_TENANTS_TARGET``, ``WAMESH_ADMIN_TOKEN``). ``rotate-key`` works on the database
directly, since it needs the keys themselves (``WAMESH_DATABASE_URL``,
``WAMESH_CREDENTIAL_KEYS``, ``WAMESH_CREDENTIAL_ACTIVE_KEY``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from rich.console import Console
from rich.table import Table

from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit.rpc.cli import AsJson, call, message_json
from wamesh_kit.settings import DEV_ADMIN_TOKEN

tenants_app = typer.Typer(help="Tenants: create, inspect and change them.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)

Target = Annotated[
    str,
    typer.Option(envvar="WAMESH_TENANTS_TARGET", help="the tenants service, host:port"),
]
AdminToken = Annotated[
    str, typer.Option(envvar="WAMESH_ADMIN_TOKEN", help="admin token", show_default=False)
]
TenantId = Annotated[str, typer.Argument(help="tenant id")]
DEFAULT_TARGET = "127.0.0.1:50051"
_STATUS = {"active": pb.TENANT_STATUS_ACTIVE, "suspended": pb.TENANT_STATUS_SUSPENDED}


def _call(target: str, token: str, method: Callable[[Any], Any]) -> Any:
    """Run ``method(stub)``, one TenantRegistry RPC; a failure prints and exits 1."""
    return call(target, token, lambda channel: method(tenants_pb2_grpc.TenantRegistryStub(channel)))


def _print_tenants(tenants: list[pb.Tenant], as_json: bool, next_page_token: str = "") -> None:
    if as_json:
        page = {"tenants": [message_json(t) for t in tenants], "next_page_token": next_page_token}
        print(json.dumps(page))
        return
    table = Table()
    for column in ("id", "name", "status", "numbers", "account", "version"):
        table.add_column(column)
    for tenant in tenants:
        table.add_row(
            tenant.id,
            tenant.display_name,
            pb.TenantStatus.Name(tenant.status).removeprefix("TENANT_STATUS_").lower(),
            "\n".join(n.number for n in tenant.sender_numbers) or "-",
            tenant.credentials.account_sid or "-",
            str(tenant.version),
        )
    _out.print(table)
    if next_page_token:
        _out.print(f"more: --page-token {next_page_token}")


def _print_one(tenant: pb.Tenant, as_json: bool) -> None:
    if as_json:
        print(json.dumps(message_json(tenant)))
    else:
        _print_tenants([tenant], as_json=False)


def _limits(
    base: pb.Limits | None = None,
    *,
    outbound_per_second: float | None,
    recipient_interval_s: float | None,
    inbound_per_minute: int | None,
    max_send_attempts: int | None,
) -> pb.Limits | None:
    """The limits given on the command line over ``base``; None when none was given."""
    given = (outbound_per_second, recipient_interval_s, inbound_per_minute, max_send_attempts)
    if all(value is None for value in given):
        return None
    limits = pb.Limits()
    if base is not None:
        limits.CopyFrom(base)
    if outbound_per_second is not None:
        limits.outbound_messages_per_second = outbound_per_second
    if recipient_interval_s is not None:
        interval = Duration()
        interval.FromNanoseconds(round(recipient_interval_s * 1e9))
        limits.recipient_min_interval.CopyFrom(interval)
    if inbound_per_minute is not None:
        limits.inbound_messages_per_minute = inbound_per_minute
    if max_send_attempts is not None:
        limits.max_send_attempts = max_send_attempts
    return limits


def _bot(path: Path | None) -> pb.BotSettings | None:
    if path is None:
        return None
    try:
        return json_format.Parse(path.read_text(), pb.BotSettings())
    except (OSError, json_format.ParseError) as error:
        _err.print(f"[red]--bot-file[/red]: {error}")
        raise typer.Exit(2) from None


OutboundPerSecond = Annotated[
    float | None, typer.Option(help="outbound messages per second per sender")
]
RecipientInterval = Annotated[
    float | None, typer.Option(help="seconds between two messages to one customer")
]
InboundPerMinute = Annotated[
    int | None, typer.Option(help="inbound messages per minute per customer")
]
MaxSendAttempts = Annotated[
    int | None, typer.Option(help="send attempts before a message is dead-lettered")
]
BotFile = Annotated[
    Path | None, typer.Option(help="bot settings as JSON (menu, greeting, promo_text, ...)")
]


@tenants_app.command()
def create(
    name: Annotated[str, typer.Option(help="display name")],
    tenant_id: Annotated[str, typer.Option("--id", help="stable id (generated if empty)")] = "",
    time_zone: Annotated[str, typer.Option(help="IANA time zone")] = "",
    language: Annotated[str, typer.Option(help="default language, e.g. es")] = "",
    support_contact: Annotated[str, typer.Option(help="who customers may contact")] = "",
    outbound_per_second: OutboundPerSecond = None,
    recipient_interval_s: RecipientInterval = None,
    inbound_per_minute: InboundPerMinute = None,
    max_send_attempts: MaxSendAttempts = None,
    bot_file: BotFile = None,
    request_id: Annotated[
        str, typer.Option(help="repeat a create safely by passing the same id")
    ] = "",
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Create a tenant."""
    request = pb.CreateTenantRequest(
        request_id=request_id or str(uuid.uuid4()),
        tenant_id=tenant_id,
        display_name=name,
        time_zone=time_zone,
        default_language=language,
        support_contact=support_contact,
        limits=_limits(
            outbound_per_second=outbound_per_second,
            recipient_interval_s=recipient_interval_s,
            inbound_per_minute=inbound_per_minute,
            max_send_attempts=max_send_attempts,
        ),
        bot=_bot(bot_file),
    )
    response = _call(target, token, lambda stub: stub.CreateTenant(request))
    _print_one(response.tenant, as_json)


@tenants_app.command()
def get(
    tenant_id: TenantId,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Show one tenant (never its secrets)."""
    request = pb.GetTenantRequest(tenant_id=tenant_id)
    _print_one(_call(target, token, lambda stub: stub.GetTenant(request)).tenant, as_json)


@tenants_app.command("list")
def list_tenants(
    status: Annotated[str | None, typer.Option(help="active or suspended")] = None,
    page_size: Annotated[int, typer.Option(help="tenants per page")] = 50,
    page_token: Annotated[str, typer.Option(help="continue after a previous page")] = "",
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """List tenants by id, one page at a time."""
    if status is not None and status not in _STATUS:
        _err.print("[red]--status[/red] must be active or suspended")
        raise typer.Exit(2)
    request = pb.ListTenantsRequest(
        page_size=page_size,
        page_token=page_token,
        status=_STATUS[status] if status else pb.TENANT_STATUS_UNSPECIFIED,
    )
    response = _call(target, token, lambda stub: stub.ListTenants(request))
    _print_tenants(list(response.tenants), as_json, response.next_page_token)


@tenants_app.command()
def update(
    tenant_id: TenantId,
    expected_version: Annotated[
        int | None,
        typer.Option(help="refuse if the tenant changed since this version (default: current)"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    time_zone: Annotated[str | None, typer.Option(help="IANA time zone")] = None,
    language: Annotated[str | None, typer.Option(help="default language")] = None,
    support_contact: Annotated[str | None, typer.Option(help="support contact")] = None,
    outbound_per_second: OutboundPerSecond = None,
    recipient_interval_s: RecipientInterval = None,
    inbound_per_minute: InboundPerMinute = None,
    max_send_attempts: MaxSendAttempts = None,
    bot_file: BotFile = None,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Change some of a tenant's settings; the rest stay as they are."""
    current = _call(
        target, token, lambda stub: stub.GetTenant(pb.GetTenantRequest(tenant_id=tenant_id))
    ).tenant
    request = pb.UpdateTenantRequest(
        tenant_id=tenant_id,
        expected_version=expected_version or current.version,
        display_name=name,
        time_zone=time_zone,
        default_language=language,
        support_contact=support_contact,
        limits=_limits(
            current.limits,
            outbound_per_second=outbound_per_second,
            recipient_interval_s=recipient_interval_s,
            inbound_per_minute=inbound_per_minute,
            max_send_attempts=max_send_attempts,
        ),
        bot=_bot(bot_file),
    )
    _print_one(_call(target, token, lambda stub: stub.UpdateTenant(request)).tenant, as_json)


def _set_status(tenant_id: str, status: int, target: str, token: str, as_json: bool) -> None:
    request = pb.SetTenantStatusRequest(tenant_id=tenant_id, status=status)  # type: ignore[arg-type]
    _print_one(_call(target, token, lambda stub: stub.SetTenantStatus(request)).tenant, as_json)


@tenants_app.command()
def suspend(
    tenant_id: TenantId,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Stop serving a tenant: its webhooks are refused and nothing is sent for it."""
    _set_status(tenant_id, pb.TENANT_STATUS_SUSPENDED, target, token, as_json)


@tenants_app.command()
def activate(
    tenant_id: TenantId,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Serve a suspended tenant again."""
    _set_status(tenant_id, pb.TENANT_STATUS_ACTIVE, target, token, as_json)


Number = Annotated[str, typer.Argument(help="WhatsApp sender number, e.g. +14155238886")]


@tenants_app.command("add-number")
def add_number(
    tenant_id: TenantId,
    number: Number,
    messaging_service_sid: Annotated[
        str, typer.Option(help="send through this Messaging Service (MG...)")
    ] = "",
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Give a tenant a sender number (a number belongs to one tenant)."""
    request = pb.AddSenderNumberRequest(
        tenant_id=tenant_id, number=number, messaging_service_sid=messaging_service_sid
    )
    sender = _call(target, token, lambda stub: stub.AddSenderNumber(request)).sender_number
    _print_number(sender, tenant_id, as_json)


@tenants_app.command("remove-number")
def remove_number(
    tenant_id: TenantId,
    number: Number,
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
) -> None:
    """Take a sender number away from a tenant; its webhooks are then refused."""
    request = pb.RemoveSenderNumberRequest(tenant_id=tenant_id, number=number)
    _call(target, token, lambda stub: stub.RemoveSenderNumber(request))
    _err.print(f"removed {number} from {tenant_id}")


@tenants_app.command("move-number")
def move_number(
    number: Number,
    from_tenant: Annotated[str, typer.Option("--from", help="the tenant that has it")],
    to_tenant: Annotated[str, typer.Option("--to", help="the tenant that gets it")],
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Move a sender number from one tenant to another in one step."""
    request = pb.MoveSenderNumberRequest(
        number=number, from_tenant_id=from_tenant, to_tenant_id=to_tenant
    )
    sender = _call(target, token, lambda stub: stub.MoveSenderNumber(request)).sender_number
    _print_number(sender, to_tenant, as_json)


def _print_number(sender: pb.SenderNumber, tenant_id: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"tenant_id": tenant_id, **message_json(sender)}))
    else:
        _out.print(f"{sender.number} → {tenant_id}")


@tenants_app.command("set-credentials")
def set_credentials(
    tenant_id: TenantId,
    account_sid: Annotated[str, typer.Option(help="the tenant's Twilio account SID (AC...)")],
    auth_token: Annotated[
        str,
        typer.Option(
            envvar="WAMESH_TWILIO_AUTH_TOKEN",
            prompt=True,
            hide_input=True,
            help="asked for when not given, so it stays out of shell history",
            show_default=False,
        ),
    ],
    api_key_sid: Annotated[str, typer.Option(help="optional API key SID (SK...)")] = "",
    api_key_secret: Annotated[
        str,
        typer.Option(envvar="WAMESH_TWILIO_API_KEY_SECRET", help="the API key's secret"),
    ] = "",
    target: Target = DEFAULT_TARGET,
    token: AdminToken = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Store a tenant's Twilio credentials (sealed at rest; never shown again)."""
    if api_key_sid and not api_key_secret:
        api_key_secret = typer.prompt("API key secret", hide_input=True)
    request = pb.SetCredentialsRequest(
        tenant_id=tenant_id,
        credentials=pb.TwilioCredentials(
            account_sid=account_sid,
            auth_token=auth_token,
            api_key_sid=api_key_sid,
            api_key_secret=api_key_secret,
        ),
    )
    summary = _call(target, token, lambda stub: stub.SetCredentials(request)).credentials
    if as_json:
        print(json.dumps({"tenant_id": tenant_id, **message_json(summary)}))
    else:
        _out.print(f"{tenant_id}: credentials for {summary.account_sid} stored")


@tenants_app.command("rotate-key")
def rotate_key(
    batch_size: Annotated[int, typer.Option(min=1, help="rows per transaction")] = 100,
    as_json: AsJson = False,
) -> None:
    """Re-encrypt every tenant's secrets under WAMESH_CREDENTIAL_ACTIVE_KEY.

    Put the new key in WAMESH_CREDENTIAL_KEYS beside the old one, make it active on the
    services, run this, then drop the old key. Safe to run while the service serves.
    """
    from wamesh_kit.db import make_engine
    from wamesh_tenants.crypto import CredentialKeyError
    from wamesh_tenants.rotation import RotationReport, rotate_credentials
    from wamesh_tenants.settings import TenantsSettings
    from wamesh_tenants.store import TenantStore

    settings = TenantsSettings()

    async def run() -> RotationReport:
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            return await rotate_credentials(
                TenantStore(engine), settings.cipher(), batch_size=batch_size
            )
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(run())
    except CredentialKeyError as error:
        _err.print(f"[red]rotation stopped[/red]: {error}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"active_key": settings.credential_active_key, **vars(report)}))
    else:
        _out.print(
            f"{report.resealed} tenants re-encrypted under {settings.credential_active_key!r}; "
            f"{report.changed_meanwhile} changed meanwhile (already under it)"
        )
