"""``wamesh orders ...``: read and move a tenant's orders from a terminal.

Calls the running service over gRPC (``WAMESH_ORDERS_TARGET``) with the admin token
(``WAMESH_ADMIN_TOKEN``) or a tenant token for that tenant.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import grpc.aio
import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from wamesh.orders.v1 import orders_pb2 as pb
from wamesh.orders.v1 import orders_pb2_grpc
from wamesh_kit.rpc.cli import AsJson, Columns, call, message_json, print_messages, rpc_failure
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN

app = typer.Typer(help="Orders: list, show, move and watch them.", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)

Target = Annotated[str, typer.Option(envvar="WAMESH_ORDERS_TARGET", help="the orders service")]
Token = Annotated[
    str, typer.Option(envvar="WAMESH_ADMIN_TOKEN", help="admin or tenant token", show_default=False)
]
TenantId = Annotated[str, typer.Argument(help="tenant id")]
OrderId = Annotated[str, typer.Argument(help="order id")]
Version = Annotated[int, typer.Option("--version", help="the order's current version")]
DEFAULT_TARGET = "127.0.0.1:50053"
STATES = {
    name.removeprefix("ORDER_STATE_").lower(): value
    for name, value in pb.OrderState.items()
    if value != pb.ORDER_STATE_UNSPECIFIED
}
# Most recent orders a `watch` table keeps on screen.
WATCH_ROWS = 30


def _stub(channel: grpc.aio.Channel) -> orders_pb2_grpc.OrderServiceStub:
    return orders_pb2_grpc.OrderServiceStub(channel)


def _state(value: int) -> str:
    return pb.OrderState.Name(value).removeprefix("ORDER_STATE_").lower()  # type: ignore[arg-type]


def _money(money: Any) -> str:
    return f"{money.units + money.nanos / 1e9:.2f} {money.currency_code}"


def _time(stamp: Any) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if stamp.seconds else "-"


ORDER_COLUMNS: Columns = {
    "number": lambda o: f"#{o.number}" if o.number else "cart",
    "id": lambda o: o.id,
    "customer": lambda o: o.customer_number,
    "state": lambda o: _state(o.state),
    "total": lambda o: _money(o.total),
    "version": lambda o: str(o.version),
    "updated": lambda o: _time(o.updated_at),
}


def _state_option(value: str, param: str) -> pb.OrderState.ValueType:
    if value not in STATES:
        raise typer.BadParameter(
            f"{value!r} is not a state; one of {', '.join(STATES)}", param_hint=f"'{param}'"
        )
    return STATES[value]


@app.command("list")
def list_orders(
    tenant_id: TenantId,
    state: Annotated[list[str] | None, typer.Option(help="only orders in this state")] = None,
    customer: Annotated[str, typer.Option(help="only this customer's (E.164)")] = "",
    page_size: Annotated[int, typer.Option(help="rows per page")] = 50,
    page_token: Annotated[str, typer.Option(help="continue after a previous page")] = "",
    target: Target = DEFAULT_TARGET,
    token: Token = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """A tenant's orders, newest first."""
    request = pb.ListOrdersRequest(
        tenant_id=tenant_id,
        states=[_state_option(value, "--state") for value in state or []],
        customer_number=customer,
        page_size=page_size,
        page_token=page_token,
    )
    page = call(target, token, lambda channel: _stub(channel).ListOrders(request))
    if as_json:
        print(json.dumps(message_json(page)))
        return
    print_messages(page.orders, ORDER_COLUMNS, False, f"orders of {tenant_id}")
    if page.next_page_token:
        _out.print(f"more: --page-token {page.next_page_token}")


@app.command()
def show(
    tenant_id: TenantId,
    order_id: OrderId,
    target: Target = DEFAULT_TARGET,
    token: Token = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """One order with its lines and history."""
    request = pb.GetOrderRequest(tenant_id=tenant_id, order_id=order_id)
    order = call(target, token, lambda channel: _stub(channel).GetOrder(request)).order
    _print_order(order, as_json)


@app.command()
def advance(
    tenant_id: TenantId,
    order_id: OrderId,
    to: Annotated[str, typer.Argument(help="preparing, out_for_delivery, ready_for_pickup, ...")],
    version: Version,
    note: Annotated[str, typer.Option(help="kept in the order's history")] = "",
    target: Target = DEFAULT_TARGET,
    token: Token = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Move an order to its next state."""
    request = pb.AdvanceOrderRequest(
        tenant_id=tenant_id,
        order_id=order_id,
        target_state=_state_option(to, "to"),
        expected_version=version,
        note=note,
    )
    order = call(target, token, lambda channel: _stub(channel).AdvanceOrder(request)).order
    _print_order(order, as_json)


@app.command()
def cancel(
    tenant_id: TenantId,
    order_id: OrderId,
    version: Version,
    reason: Annotated[str, typer.Option(help="told to the customer")] = "",
    target: Target = DEFAULT_TARGET,
    token: Token = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """Cancel an order that is not yet out of the kitchen."""
    request = pb.CancelOrderRequest(
        tenant_id=tenant_id, order_id=order_id, expected_version=version, reason=reason
    )
    order = call(target, token, lambda channel: _stub(channel).CancelOrder(request)).order
    _print_order(order, as_json)


@app.command()
def watch(
    tenant_id: TenantId,
    after: Annotated[int, typer.Option(help="resume after this position (0: new ones)")] = 0,
    target: Target = DEFAULT_TARGET,
    token: Token = DEV_ADMIN_TOKEN,
    as_json: AsJson = False,
) -> None:
    """New orders and their moves as they happen: a live table, or one JSON line each."""
    try:
        asyncio.run(_watch(tenant_id, after, target, token, as_json))
    except grpc.aio.AioRpcError as error:
        raise rpc_failure(error) from None
    except KeyboardInterrupt:
        pass


async def _watch(tenant_id: str, after: int, target: str, token: str, as_json: bool) -> None:
    request = pb.WatchOrdersRequest(tenant_id=tenant_id, after_position=after)
    async with make_channel(target, token=token) as channel:
        # grpc's stubs type a streaming call as sync-or-async; on an aio channel it is async.
        stream: Any = _stub(channel).WatchOrders(request)
        if as_json:
            async for event in stream:
                print(json.dumps(message_json(event)), flush=True)
            return
        latest: dict[str, pb.Order] = {}
        with Live(_watch_table(latest, 0), console=_out, auto_refresh=False) as live:
            async for event in stream:
                latest.pop(event.order.id, None)
                latest[event.order.id] = event.order
                while len(latest) > WATCH_ROWS:
                    latest.pop(next(iter(latest)))
                live.update(_watch_table(latest, event.position), refresh=True)


def _watch_table(latest: dict[str, pb.Order], position: int) -> Table:
    table = Table(title=f"orders, live (position {position})")
    for name in ORDER_COLUMNS:
        table.add_column(name)
    for order in reversed(latest.values()):
        table.add_row(*(show(order) for show in ORDER_COLUMNS.values()))
    return table


def _print_order(order: pb.Order, as_json: bool) -> None:
    if as_json:
        print(json.dumps(message_json(order)))
        return
    number = f"#{order.number}" if order.number else "cart"
    _out.print(
        f"[bold]{number}[/bold] {order.id} {_state(order.state)} v{order.version} "
        f"{escape(order.customer_number)} {_money(order.total)}",
        highlight=False,
    )
    for item in order.items:
        _out.print(f"  {item.quantity} x {escape(item.name)}  {_money(item.unit_price)}")
    table = Table(title="history")
    for column in ("version", "from", "to", "actor", "note", "at"):
        table.add_column(column)
    for entry in order.history:
        table.add_row(
            str(entry.version),
            _state(entry.from_state),
            _state(entry.to_state),
            entry.actor,
            escape(entry.note),
            _time(entry.occurred_at),
        )
    _out.print(table)
