"""The Messages API through the real twilio Node library (tools/sandbox/node/drive.mjs, its
documented custom ``httpClient`` hook), installed from the npm registry by ``make``."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import httpx

from tests.tools.sandbox.sandbox_testkit import (
    ACCOUNT,
    CUSTOMER,
    KEY_SECRET,
    KEY_SID,
    SENDER,
    Running,
)

OPTED_OUT = "whatsapp:+15550003333"
# Well formed, but no sender of the account: Twilio's 63007.
NOT_A_SENDER = "whatsapp:+19998887777"
DRIVER = Path(__file__).parents[3] / "tools" / "sandbox" / "node" / "drive.mjs"


async def drive(
    sandbox: Running,
    calls: list[dict[str, Any]],
    *,
    username: str = ACCOUNT.sid,
    password: str = ACCOUNT.auth_token,
) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "node is needed: the Makefile installs the driver with npm"
    assert (DRIVER.parent / "node_modules" / "twilio").is_dir(), "run make (npm ci) first"
    process = await asyncio.create_subprocess_exec(
        node,
        str(DRIVER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    request = {
        "base_url": sandbox.url,
        "username": username,
        "password": password,
        "account_sid": ACCOUNT.sid,
        "calls": calls,
    }
    out, err = await process.communicate(json.dumps(request).encode())
    assert process.returncode == 0, err.decode()
    results: list[dict[str, Any]] = json.loads(out)["results"]
    return results


async def test_node_creates_fetches_and_lists_across_pages(sandbox: Running) -> None:
    creates = [
        {"op": "create", "params": {"to": CUSTOMER, "from": SENDER, "body": f"n{i}"}}
        for i in range(5)
    ]
    created = await drive(sandbox, creates)
    sids = [result["ok"]["sid"] for result in created]

    [fetched, listed] = await drive(
        sandbox,
        [
            {"op": "fetch", "sid": sids[0]},
            {"op": "list", "params": {"to": CUSTOMER, "pageSize": 2}},
        ],
    )

    assert all(sid.startswith("SM") for sid in sids)
    assert fetched["ok"]["sid"] == sids[0]
    assert fetched["ok"]["body"] == "n0"
    assert [m["sid"] for m in listed["ok"]] == list(reversed(sids))


async def test_node_sends_media_with_an_api_key(sandbox: Running) -> None:
    media = ["https://example.com/a.png", "https://example.com/b.jpg?x=1&y=2"]
    [created] = await drive(
        sandbox,
        [{"op": "create", "params": {"to": CUSTOMER, "from": SENDER, "mediaUrl": media}}],
        username=KEY_SID,
        password=KEY_SECRET,
    )

    assert created["ok"]["numMedia"] == "2"
    assert sandbox.app.sandbox.record.messages[created["ok"]["sid"]].media_urls == media


async def test_node_raises_rest_exceptions_with_twilios_codes(sandbox: Running) -> None:
    # STOP through the sandbox's own inbound side, as a customer would opt out.
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as http:
        stopped = await http.post(
            "/sandbox/inbound", json={"from": OPTED_OUT, "to": SENDER, "body": "STOP"}
        )
    assert stopped.status_code == 200, stopped.text
    results = await drive(
        sandbox,
        [
            {"op": "create", "params": {"to": "+15550001111", "from": SENDER, "body": "x"}},
            {"op": "create", "params": {"to": CUSTOMER, "from": "whatsapp:+1999", "body": "x"}},
            {"op": "create", "params": {"to": CUSTOMER, "from": SENDER}},
            {"op": "create", "params": {"to": CUSTOMER, "from": SENDER, "body": "x" * 1601}},
            {
                "op": "create",
                "params": {"to": CUSTOMER, "from": SENDER, "contentSid": "HX" + "0" * 32},
            },
            {"op": "fetch", "sid": "SM" + "0" * 32},
            {"op": "create", "params": {"to": CUSTOMER, "from": NOT_A_SENDER, "body": "x"}},
            {"op": "create", "params": {"to": OPTED_OUT, "from": SENDER, "body": "x"}},
        ],
    )

    errors = [(r["error"]["name"], r["error"]["code"], r["error"]["status"]) for r in results]
    assert errors == [
        ("RestException", 21211, 400),
        ("RestException", 21212, 400),
        ("RestException", 21602, 400),
        ("RestException", 21617, 400),
        ("RestException", 21655, 400),
        ("RestException", 20404, 404),
        ("RestException", 63007, 400),
        ("RestException", 21610, 400),
    ]
    assert all(
        r["error"]["moreInfo"].startswith("https://www.twilio.com/docs/errors/") for r in results
    )


async def test_node_with_wrong_credentials_gets_20003(sandbox: Running) -> None:
    [result] = await drive(
        sandbox,
        [{"op": "create", "params": {"to": CUSTOMER, "from": SENDER, "body": "x"}}],
        password="wrong",
    )

    assert (result["error"]["code"], result["error"]["status"]) == (20003, 401)
