"""``wamesh orders ...`` run as a real process against the service on a real socket, with
orders the bot took from customers of a real shop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from tests.services.orders.orders_testkit import Mesh, Shop, unique_customer
from wamesh.orders.v1 import orders_pb2 as pb
from wamesh_kit.rpc.server import GrpcService

S = pb.OrderState
M = TypeVar("M", bound=Message)
# A `wamesh` process answers within this long (it imports every service's commands first).
LINE_TIMEOUT_S = 30.0
ANSI = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|\][^\x07]*\x07)")


@pytest.fixture
def env(service: GrpcService) -> dict[str, str]:
    return {"WAMESH_ORDERS_TARGET": f"127.0.0.1:{service.port}"}


def parsed(text: str, message: type[M]) -> M:
    """What a command printed with ``--json``, read back as the contract's message."""
    return json_format.Parse(text, message())


async def place_order(mesh: Mesh, shop: Shop, customer: str, quantity: int = 2) -> pb.Order:
    """A pickup order of ``quantity`` Margheritas the customer confirms through the bot."""
    for text in (f"{quantity} x 1", "checkout", "2", "confirm"):
        await mesh.say(shop, customer, text)
    order = await mesh.latest_order(shop, customer)
    assert order.state == S.ORDER_STATE_CONFIRMED
    return order


async def current(mesh: Mesh, order: pb.Order) -> pb.Order:
    response = await mesh.orders.GetOrder(
        pb.GetOrderRequest(tenant_id=order.tenant_id, order_id=order.id)
    )
    found: pb.Order = response.order
    return found


@asynccontextmanager
async def wamesh_process(*args: str, env: dict[str, str]) -> AsyncIterator[Any]:
    """``wamesh *args`` left running (for ``watch``); killed, its pipes drained, on exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wamesh_kit",
        *args,
        env={**os.environ, "COLUMNS": "200", **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.communicate(), LINE_TIMEOUT_S)


async def next_line(process: Any) -> str:
    line: bytes = await asyncio.wait_for(process.stdout.readline(), LINE_TIMEOUT_S)
    assert line, "the process ended without printing a line"
    return line.decode()


async def output_until(process: Any, *wanted: str) -> str:
    """What the process printed (control codes taken out) once it holds every ``wanted``."""
    seen = ""

    async def read() -> str:
        nonlocal seen
        while not all(text in seen for text in wanted):
            chunk: bytes = await process.stdout.read(4096)
            assert chunk, f"the process ended; it printed {seen!r}"
            seen = ANSI.sub("", seen + chunk.decode(errors="replace"))
        return seen

    return await asyncio.wait_for(read(), LINE_TIMEOUT_S)


async def test_list_filters_by_state_as_json_and_as_a_table(
    mesh: Mesh, env: dict[str, str], wamesh_cli: Any
) -> None:
    shop = await mesh.shop()
    ordered = await place_order(mesh, shop, unique_customer())
    browsing = unique_customer()
    await mesh.say(shop, browsing, "1")
    cart = (
        await mesh.orders.GetCart(
            pb.GetCartRequest(tenant_id=shop.tenant_id, customer_number=browsing)
        )
    ).cart

    code, out, err = await wamesh_cli(
        "orders", "list", shop.tenant_id, "--state", "confirmed", "--json", env=env
    )
    assert code == 0, err
    listed = parsed(out, pb.ListOrdersResponse).orders
    assert [(o.id, o.state, o.number) for o in listed] == [
        (ordered.id, S.ORDER_STATE_CONFIRMED, ordered.number)
    ]

    code, out, err = await wamesh_cli(
        "orders",
        "list",
        shop.tenant_id,
        "--state",
        "draft",
        "--state",
        "confirmed",
        "--json",
        env=env,
    )
    assert code == 0, err
    assert [o.id for o in parsed(out, pb.ListOrdersResponse).orders] == [cart.id, ordered.id]

    code, out, err = await wamesh_cli("orders", "list", shop.tenant_id, "--state", "draft", env=env)
    assert code == 0, err
    assert cart.id in out
    assert browsing in out
    assert "25.00 EUR" in out
    assert ordered.id not in out
    code, out, err = await wamesh_cli("orders", "list", shop.tenant_id, env=env)
    assert code == 0, err
    assert f"#{ordered.number}" in out
    assert ordered.id in out
    assert cart.id in out


async def test_show_prints_the_lines_and_the_history(
    mesh: Mesh, env: dict[str, str], wamesh_cli: Any
) -> None:
    shop = await mesh.shop()
    customer = unique_customer()
    order = await place_order(mesh, shop, customer, quantity=3)

    code, out, err = await wamesh_cli("orders", "show", shop.tenant_id, order.id, "--json", env=env)
    assert code == 0, err
    shown = parsed(out, pb.Order)
    assert shown == await current(mesh, order)
    assert [(i.name, i.quantity) for i in shown.items] == [("Margherita", 3)]
    assert [(h.from_state, h.to_state, h.actor) for h in shown.history] == [
        (S.ORDER_STATE_DRAFT, S.ORDER_STATE_CONFIRMED, "customer")
    ]

    code, out, err = await wamesh_cli("orders", "show", shop.tenant_id, order.id, env=env)
    assert code == 0, err
    assert f"#{order.number} {order.id} confirmed v{order.version} {customer} 75.00 EUR" in out
    assert "3 x Margherita  25.00 EUR" in out
    (history_row,) = [line for line in out.splitlines() if "customer" in line and "│" in line]
    assert re.search(r"draft\s*│\s*confirmed\s*│\s*customer", history_row), history_row


async def test_advance_moves_an_order_at_its_version_and_refuses_a_stale_one(
    mesh: Mesh, env: dict[str, str], wamesh_cli: Any
) -> None:
    shop = await mesh.shop()
    customer = unique_customer()
    order = await place_order(mesh, shop, customer)

    code, out, err = await wamesh_cli(
        "orders",
        "advance",
        shop.tenant_id,
        order.id,
        "preparing",
        "--version",
        str(order.version),
        "--note",
        "oven on",
        "--json",
        env=env,
    )
    assert code == 0, err
    preparing = parsed(out, pb.Order)
    assert (preparing.state, preparing.version) == (S.ORDER_STATE_PREPARING, order.version + 1)
    assert (preparing.history[-1].actor, preparing.history[-1].note) == ("staff", "oven on")
    assert (await mesh.received(shop, customer))[-1] == (
        f"Your order #{order.number} is being prepared."
    )

    # The version it had before: refused, and nothing moves.
    code, out, err = await wamesh_cli(
        "orders",
        "advance",
        shop.tenant_id,
        order.id,
        "ready_for_pickup",
        "--version",
        str(order.version),
        env=env,
    )
    assert code == 1
    assert "FAILED_PRECONDITION" in err
    assert "expected_version" in err
    assert out == ""
    unchanged = await current(mesh, order)
    assert (unchanged.state, unchanged.version) == (S.ORDER_STATE_PREPARING, preparing.version)

    code, out, err = await wamesh_cli(
        "orders",
        "advance",
        shop.tenant_id,
        order.id,
        "ready_for_pickup",
        "--version",
        str(preparing.version),
        env=env,
    )
    assert code == 0, err
    assert f"#{order.number} {order.id} ready_for_pickup v{preparing.version + 1}" in out
    assert re.search(r"preparing\s*│\s*ready_for_pickup\s*│\s*staff", out), out
    ready = await current(mesh, order)
    assert (ready.state, ready.version) == (S.ORDER_STATE_READY_FOR_PICKUP, preparing.version + 1)


async def test_cancel_keeps_the_reason_and_tells_the_customer(
    mesh: Mesh, env: dict[str, str], wamesh_cli: Any
) -> None:
    shop = await mesh.shop()
    ana, bea = unique_customer(), unique_customer()
    first = await place_order(mesh, shop, ana)
    second = await place_order(mesh, shop, bea)

    code, out, err = await wamesh_cli(
        "orders",
        "cancel",
        shop.tenant_id,
        first.id,
        "--version",
        str(first.version),
        "--reason",
        "out of saffron",
        "--json",
        env=env,
    )
    assert code == 0, err
    cancelled = parsed(out, pb.Order)
    assert cancelled.state == S.ORDER_STATE_CANCELLED
    last = cancelled.history[-1]
    assert (last.from_state, last.to_state, last.actor, last.note) == (
        S.ORDER_STATE_CONFIRMED,
        S.ORDER_STATE_CANCELLED,
        "staff",
        "out of saffron",
    )
    assert (await mesh.received(shop, ana))[-1] == (
        f"Your order #{first.number} was cancelled: out of saffron"
    )

    code, out, err = await wamesh_cli(
        "orders",
        "cancel",
        shop.tenant_id,
        second.id,
        "--version",
        str(second.version),
        "--reason",
        "closed early",
        env=env,
    )
    assert code == 0, err
    assert f"#{second.number} {second.id} cancelled v{second.version + 1}" in out
    assert re.search(r"confirmed\s*│\s*cancelled\s*│\s*staff\s*│\s*closed early", out), out
    assert (await current(mesh, second)).state == S.ORDER_STATE_CANCELLED

    # The same command again (a retry): the order as it is, and the customer told once.
    code, out, err = await wamesh_cli(
        "orders",
        "cancel",
        shop.tenant_id,
        second.id,
        "--version",
        str(second.version + 1),
        "--reason",
        "closed early",
        "--json",
        env=env,
    )
    assert code == 0, err
    again = parsed(out, pb.Order)
    assert (again.version, len(again.history)) == (second.version + 1, 2)
    told = await mesh.received(shop, bea)
    assert told.count(f"Your order #{second.number} was cancelled: closed early") == 1


async def test_watch_as_json_prints_one_line_per_event_after_a_position(
    mesh: Mesh, env: dict[str, str]
) -> None:
    shop = await mesh.shop()
    order = await place_order(mesh, shop, unique_customer())
    moved = (
        await mesh.orders.AdvanceOrder(
            pb.AdvanceOrderRequest(
                tenant_id=shop.tenant_id,
                order_id=order.id,
                target_state=S.ORDER_STATE_PREPARING,
                expected_version=order.version,
            )
        )
    ).order

    # The shop's first event, the confirmation, is at position 1: after it, the move.
    async with wamesh_process(
        "orders", "watch", shop.tenant_id, "--json", "--after", "1", env=env
    ) as watching:
        first = parsed(await next_line(watching), pb.WatchOrdersResponse)
        assert (first.order.id, first.order.state, first.order.version) == (
            order.id,
            S.ORDER_STATE_PREPARING,
            moved.version,
        )
        assert (first.transition.from_state, first.transition.to_state) == (
            S.ORDER_STATE_CONFIRMED,
            S.ORDER_STATE_PREPARING,
        )
        assert first.position > 1

        # A move made while it watches arrives as the next line.
        await mesh.orders.AdvanceOrder(
            pb.AdvanceOrderRequest(
                tenant_id=shop.tenant_id,
                order_id=order.id,
                target_state=S.ORDER_STATE_READY_FOR_PICKUP,
                expected_version=moved.version,
            )
        )
        second = parsed(await next_line(watching), pb.WatchOrdersResponse)
        assert second.position > first.position
        assert (second.order.id, second.transition.to_state, second.order.version) == (
            order.id,
            S.ORDER_STATE_READY_FOR_PICKUP,
            moved.version + 1,
        )


async def test_watch_as_a_table_shows_orders_live_and_ends_on_ctrl_c(
    mesh: Mesh, env: dict[str, str]
) -> None:
    shop = await mesh.shop()
    earlier = await place_order(mesh, shop, unique_customer())
    customer = unique_customer()
    # The live table redraws only on a terminal; rich takes the pipe for one when told so.
    terminal = {**env, "TTY_COMPATIBLE": "1", "NO_COLOR": "1"}
    # After the shop's first event (position 1, the earlier order's confirmation).
    async with wamesh_process(
        "orders", "watch", shop.tenant_id, "--after", "1", env=terminal
    ) as watching:
        order = await place_order(mesh, shop, customer)
        shown = await output_until(watching, order.id)
        row = next(line for line in shown.splitlines() if order.id in line)
        assert f"#{order.number}" in row
        assert customer in row
        assert "confirmed" in row
        await mesh.orders.AdvanceOrder(
            pb.AdvanceOrderRequest(
                tenant_id=shop.tenant_id,
                order_id=order.id,
                target_state=S.ORDER_STATE_PREPARING,
                expected_version=order.version,
            )
        )
        shown = await output_until(watching, "preparing")
        (moved_row, *_) = [line for line in shown.splitlines() if "preparing" in line]
        assert order.id in moved_row
        assert earlier.id not in shown
        watching.send_signal(signal.SIGINT)
        await asyncio.wait_for(watching.wait(), LINE_TIMEOUT_S)
        assert watching.returncode == 0


@pytest.mark.parametrize(
    ("command", "param"),
    [
        (("list", "--state", "confirmed", "--state", "shipped"), "'--state'"),
        (("advance", "order-id", "shipped", "--version", "1"), "'to'"),
    ],
)
async def test_an_unknown_state_word_is_refused_naming_it_and_the_states(
    command: tuple[str, ...], param: str, wamesh_cli: Any
) -> None:
    subcommand, *rest = command
    # Refused before anything is called: no service needed.
    code, out, err = await wamesh_cli("orders", subcommand, "some-tenant", *rest)
    assert code == 2
    assert out == ""
    assert f"Invalid value for {param}: 'shipped' is not a state" in err
    for state in ("confirmed", "preparing", "ready_for_pickup", "cancelled"):
        assert state in err
