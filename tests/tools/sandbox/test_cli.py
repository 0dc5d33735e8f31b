"""``wamesh dev sandbox``: its verbs drive a running sandbox through the admin API. Each runs
in a thread (the CLI is synchronous) while the sandbox serves in the test's loop."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from tests.tools.sandbox.sandbox_testkit import (
    ACCOUNT,
    CUSTOMER,
    SECOND,
    SENDER,
    Running,
    receiver,
    running_sandbox,
)
from wamesh_kit.cli import app as kit_app
from wamesh_sandbox.cli import sandbox_app
from wamesh_sandbox.settings import Sender

OTHER_CUSTOMER = "whatsapp:+15550002222"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT.sid}/Messages.json"


async def run(sandbox: Running, *args: str) -> Result:
    command = [*args, "--url", sandbox.url]
    return await asyncio.to_thread(
        lambda: CliRunner().invoke(sandbox_app, command, catch_exceptions=False)
    )


def printed(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def create(sandbox: Running, to: str, body: str) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=sandbox.url, auth=(ACCOUNT.sid, ACCOUNT.auth_token)
    ) as http:
        return await http.post(MESSAGES, data={"From": SENDER, "To": to, "Body": body})


async def test_inbound_posts_the_customers_message_and_prints_the_result() -> None:
    async with receiver() as (url, target):
        account = dataclasses.replace(
            ACCOUNT, senders={SENDER: Sender(SENDER, f"{url}/twilio/whatsapp")}
        )
        async with running_sandbox([account, SECOND]) as sandbox:
            result = await run(sandbox, "inbound", "--from", CUSTOMER, "--body", "hello there")

            shown = printed(result)
            assert shown["outcome"] == "delivered"
            assert shown["url"] == f"{url}/twilio/whatsapp"
            assert [a["status"] for a in shown["attempts"]] == [200]
            [got] = target.got
            assert (got.form["From"], got.form["To"], got.form["Body"]) == (
                CUSTOMER,
                SENDER,
                "hello there",
            )
            assert got.form["MessageSid"] == shown["message_sid"]
            assert (SENDER, CUSTOMER) in sandbox.app.sandbox.record.last_inbound


async def test_fault_adds_one_that_faults_lists_and_faults_clear_removes(
    sandbox: Running,
) -> None:
    added = printed(await run(sandbox, "fault", "--account-sid", ACCOUNT.sid, "--code", "20429"))
    lasting = printed(
        await run(
            sandbox,
            "fault",
            "--account-sid",
            SECOND.sid,
            "--code",
            "20500",
            "--count",
            "0",
            "--sender",
            SENDER,
        )
    )
    listed = printed(await run(sandbox, "faults"))
    refused = await create(sandbox, CUSTOMER, "meets the fault")
    accepted = await create(sandbox, CUSTOMER, "after it")
    cleared = printed(await run(sandbox, "faults", "--clear"))
    after = printed(await run(sandbox, "faults"))

    assert (added["account_sid"], added["code"], added["status"], added["count"]) == (
        ACCOUNT.sid,
        20429,
        429,
        1,
    )
    assert (lasting["count"], lasting["sender"]) == (None, SENDER)  # --count 0: until cleared
    assert [f["id"] for f in listed["faults"]] == [added["id"], lasting["id"]]
    assert (refused.status_code, refused.json()["code"]) == (429, 20429)
    assert accepted.status_code == 201
    assert cleared == after == {"faults": [], "rate_limits": []}
    assert sandbox.app.sandbox.faults.describe() == after


async def test_rate_limit_sets_a_limit_the_faults_list_shows(sandbox: Running) -> None:
    shown = printed(
        await run(
            sandbox,
            "rate-limit",
            "--account-sid",
            ACCOUNT.sid,
            "--per-second",
            "2",
            "--sender",
            SENDER,
        )
    )
    listed = printed(await run(sandbox, "faults"))

    limit = {"account_sid": ACCOUNT.sid, "sender": SENDER, "per_second": 2.0}
    assert shown["rate_limits"] == listed["rate_limits"] == [limit]


async def test_messages_lists_what_was_sent_to_one_recipient(sandbox: Running) -> None:
    first = await create(sandbox, CUSTOMER, "one")
    await create(sandbox, OTHER_CUSTOMER, "elsewhere")
    second = await create(sandbox, CUSTOMER, "two")

    to_customer = printed(await run(sandbox, "messages", "--to", CUSTOMER))
    everything = printed(await run(sandbox, "messages"))

    assert [m["sid"] for m in to_customer["messages"]] == [
        first.json()["sid"],
        second.json()["sid"],
    ]
    assert [m["body"] for m in to_customer["messages"]] == ["one", "two"]
    assert len(everything["messages"]) == 3


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--code", "12345"], "code"),
        (["--reset", "sideways"], "reset"),
        (["--status", "500"], "code"),
        (["--latency-ms", "50", "--latency-max-ms", "10"], "latency_max_ms"),
    ],
)
async def test_a_refused_fault_exits_1_and_prints_the_error(
    sandbox: Running, args: list[str], field: str
) -> None:
    result = await run(sandbox, "fault", "--account-sid", ACCOUNT.sid, *args)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert json.loads(result.stderr)["field"] == field
    assert sandbox.app.sandbox.faults.describe()["faults"] == []


def test_the_kit_cli_has_the_sandbox_under_dev() -> None:
    runner = CliRunner()

    dev = runner.invoke(kit_app, ["dev", "--help"])
    sandbox = runner.invoke(kit_app, ["dev", "sandbox", "--help"])

    assert dev.exit_code == 0, dev.output
    assert "sandbox" in dev.stdout
    assert sandbox.exit_code == 0, sandbox.output
    for verb in ("inbound", "fault", "rate-limit", "faults", "messages"):
        assert verb in sandbox.stdout
