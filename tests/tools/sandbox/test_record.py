"""The journal: what one sandbox saw (messages and their statuses, the webhooks it sent, who
wrote in, who opted out) is there again in the next one started on the same file, and a
clear is kept too. Without a file the sandbox writes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from tests.tools.sandbox.sandbox_testkit import (
    ACCOUNT,
    CUSTOMER,
    SENDER,
    Running,
    eventually,
    receiver,
    running_sandbox,
)
from wamesh_sandbox.record import Record, RecordError

STOPPER = "whatsapp:+15550003333"  # writes STOP
STRANGER = "whatsapp:+15550004444"  # never writes: no window


@pytest.fixture(autouse=True)
def _no_record_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only what each test passes decides where (and whether) the record is kept.
    monkeypatch.delenv("WAMESH_SANDBOX_RECORD_FILE", raising=False)
    monkeypatch.delenv("WAMESH_DEV_DATA_DIR", raising=False)


@contextlib.asynccontextmanager
async def twilio(sandbox: Running) -> AsyncIterator[Client]:
    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token, http_client=http)
    client.api.base_url = sandbox.url
    try:
        yield client
    finally:
        await http.close()


async def admin(sandbox: Running, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as http:
        return await http.request(method, path, **kwargs)


async def customer_writes(sandbox: Running, customer: str, body: str, webhook_url: str) -> None:
    spec = {"from": customer, "to": SENDER, "body": body, "webhook_url": webhook_url}
    response = await admin(sandbox, "POST", "/sandbox/inbound", json=spec)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "delivered"


async def reaches(sandbox: Running, sid: str, status: str) -> None:
    messages = sandbox.app.sandbox.record.messages
    await eventually(lambda: True if messages[sid].status == status else None)


async def all_webhooks_done(sandbox: Running, count: int) -> None:
    webhooks = sandbox.app.sandbox.record.webhooks

    def done() -> bool | None:
        finished = len(webhooks) == count and all(w.outcome != "pending" for w in webhooks)
        return True if finished else None

    await eventually(done)


async def test_messages_webhooks_opt_outs_and_windows_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    async with receiver() as (url, target):
        async with running_sandbox(record_file=path) as first:
            await customer_writes(first, CUSTOMER, "hi", f"{url}/inbound")
            await customer_writes(first, STOPPER, "STOP", f"{url}/inbound")
            async with twilio(first) as client:
                read = await client.messages.create_async(
                    to=CUSTOMER, from_=SENDER, body="hello", status_callback=f"{url}/status"
                )
                failed = await client.messages.create_async(
                    to=STRANGER, from_=SENDER, body="outside the window"
                )
            await reaches(first, read.sid, "read")
            await reaches(first, failed.sid, "failed")
            await all_webhooks_done(first, 2 + 4)  # two inbound, four status callbacks
            record = first.app.sandbox.record
            messages = copy.deepcopy(record.messages)
            webhooks = copy.deepcopy(record.webhooks)
            last_inbound = dict(record.last_inbound)
        assert len(target.got) == 6

        async with running_sandbox(record_file=path) as second:
            record = second.app.sandbox.record
            assert record.messages == messages
            assert record.messages[read.sid].statuses == ["queued", "sent", "delivered", "read"]
            assert record.messages[failed.sid].statuses == ["queued", "failed"]
            assert record.webhooks == webhooks
            assert [w.kind for w in record.webhooks] == ["inbound"] * 2 + ["status"] * 4
            assert record.last_inbound == last_inbound
            assert record.opted_out == {(SENDER, STOPPER)}

            shown = await admin(second, "GET", "/sandbox/webhooks", params={"kind": "inbound"})
            assert [w["params"]["Body"] for w in shown.json()["webhooks"]] == ["hi", "STOP"]
            async with twilio(second) as client:
                fetched = await client.messages(read.sid).fetch_async()
                listed = await client.messages.list_async()
                with pytest.raises(TwilioRestException) as opted_out:
                    await client.messages.create_async(to=STOPPER, from_=SENDER, body="x")
                in_window = await client.messages.create_async(
                    to=CUSTOMER, from_=SENDER, body="still in the window"
                )
                outside = await client.messages.create_async(
                    to=STRANGER, from_=SENDER, body="still outside"
                )
            await reaches(second, in_window.sid, "read")
            await reaches(second, outside.sid, "failed")

    assert (fetched.status, fetched.body) == ("read", "hello")
    assert [m.sid for m in listed] == [failed.sid, read.sid]
    assert (opted_out.value.status, opted_out.value.code) == (400, 21610)
    assert record.messages[outside.sid].error_code == 63016
    assert record.messages[in_window.sid].error_code is None


async def test_a_clear_survives_a_restart_and_what_follows_it_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    async with receiver() as (url, _), running_sandbox(record_file=path) as first:
        await customer_writes(first, CUSTOMER, "hi", f"{url}/inbound")
        await customer_writes(first, STOPPER, "STOP", f"{url}/inbound")
        async with twilio(first) as client:
            before = await client.messages.create_async(to=CUSTOMER, from_=SENDER, body="a")
        await reaches(first, before.sid, "read")
        await all_webhooks_done(first, 2)

        cleared = await admin(first, "POST", "/sandbox/clear")
        assert cleared.status_code == 204
        assert (await admin(first, "GET", "/sandbox/messages")).json() == {"messages": []}
        assert (await admin(first, "GET", "/sandbox/webhooks")).json() == {"webhooks": []}

        async with twilio(first) as client:
            after = await client.messages.create_async(to=STOPPER, from_=SENDER, body="b")
        await reaches(first, after.sid, "failed")  # the window went with the clear

    async with running_sandbox(record_file=path) as second:
        record = second.app.sandbox.record
        assert list(record.messages) == [after.sid]
        assert record.messages[after.sid].error_code == 63016
        assert record.webhooks == []
        assert record.last_inbound == {}
        assert record.opted_out == set()
        async with twilio(second) as client:
            to_the_stopper = await client.messages.create_async(
                to=STOPPER, from_=SENDER, body="no longer opted out"
            )
            to_the_customer = await client.messages.create_async(
                to=CUSTOMER, from_=SENDER, body="no window any more"
            )
        await reaches(second, to_the_customer.sid, "failed")

    assert to_the_stopper.status == "queued"
    assert record.messages[to_the_customer.sid].error_code == 63016


async def test_without_a_record_file_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with receiver() as (url, _), running_sandbox() as sandbox:
        assert sandbox.app.sandbox.settings.record_path() is None
        await customer_writes(sandbox, CUSTOMER, "STOP", f"{url}/inbound")
        async with twilio(sandbox) as client:
            created = await client.messages.create_async(
                to=STRANGER, from_=SENDER, body="x", status_callback=f"{url}/status"
            )
        await reaches(sandbox, created.sid, "failed")
        await all_webhooks_done(sandbox, 1 + 2)
        assert (await admin(sandbox, "POST", "/sandbox/clear")).status_code == 204

    assert await asyncio.to_thread(lambda: list(tmp_path.iterdir())) == []


async def test_wamesh_dev_data_dir_keeps_the_record_in_that_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAMESH_DEV_DATA_DIR", str(tmp_path / "dev"))
    async with running_sandbox() as first:
        async with twilio(first) as client:
            created = await client.messages.create_async(to=STRANGER, from_=SENDER, body="x")
        await reaches(first, created.sid, "failed")

    assert (tmp_path / "dev" / "record.jsonl").is_file()
    async with running_sandbox() as second:
        assert list(second.app.sandbox.record.messages) == [created.sid]


async def test_a_line_cut_short_by_a_kill_is_left_out(tmp_path: Path) -> None:
    path = tmp_path / "record.jsonl"
    async with running_sandbox(record_file=path) as first, twilio(first) as client:
        created = await client.messages.create_async(to=CUSTOMER, from_=SENDER, body="kept")
    with path.open("a") as journal:
        journal.write('{"kind":"message","sid":"SM')  # what a SIGKILL mid-write leaves

    async with running_sandbox(record_file=path) as second:
        assert list(second.app.sandbox.record.messages) == [created.sid]


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        (['{"kind":"message"', '{"kind":"clear"}'], ":1: is not JSON"),
        (['{"kind":"inbound","url":"http://x"}'], ":1: is not an event this sandbox wrote"),
    ],
    ids=["bad JSON before the end", "an event of another shape"],
)
def test_a_journal_it_cannot_replay_stops_the_start_naming_the_line(
    tmp_path: Path, lines: list[str], problem: str
) -> None:
    path = tmp_path / "record.jsonl"
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(RecordError) as error:
        Record(path)

    assert f"{path}:" in str(error.value)
    assert problem in str(error.value)
