"""What the sandbox posts as Twilio: status callbacks and customers' inbound messages, signed
with the account's auth token, retried by Twilio's rules, checked by the twilio library's own
RequestValidator on a real receiving server."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.tools.sandbox.sandbox_testkit import (
    ACCOUNT,
    CONTENT_SID,
    CUSTOMER,
    SENDER,
    Received,
    Running,
    eventually,
    hung_target,
    receiver,
    running_sandbox,
)
from wamesh_sandbox.settings import Account, Sender
from wamesh_sandbox.webhooks import RetryRules

MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT.sid}/Messages.json"


def signed_by(token: str, got: Received) -> bool:
    return bool(
        RequestValidator(token).validate(got.url, got.form, got.headers["x-twilio-signature"])
    )


async def send(sandbox: Running, **fields: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=sandbox.url, auth=(ACCOUNT.sid, ACCOUNT.auth_token)
    ) as http:
        response = await http.post(MESSAGES, data={"From": SENDER, "To": CUSTOMER, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def customer_writes(sandbox: Running, body: str, **extra: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as http:
        response = await http.post(
            "/sandbox/inbound", json={"from": CUSTOMER, "to": SENDER, "body": body, **extra}
        )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def statuses(got: list[Received]) -> list[str]:
    return [r.form["MessageStatus"] for r in got]


async def test_status_callbacks_walk_queued_sent_delivered_read_signed(sandbox: Running) -> None:
    await customer_writes(sandbox, "hi")  # opens the 24-hour window
    async with receiver() as (url, target):
        created = await send(sandbox, Body="hello", StatusCallback=f"{url}/status")
        await target.wait_for(lambda got: len(got) == 4)

    assert statuses(target.got) == ["queued", "sent", "delivered", "read"]
    for got in target.got:
        assert signed_by(ACCOUNT.auth_token, got)
        assert not signed_by("another-token", got)
        assert got.form["MessageSid"] == created["sid"] == got.form["SmsSid"]
        assert (got.form["AccountSid"], got.form["From"], got.form["To"]) == (
            ACCOUNT.sid,
            SENDER,
            CUSTOMER,
        )
        assert "ErrorCode" not in got.form


async def test_each_callback_goes_out_as_its_status_is_reached() -> None:
    delay = 0.2
    async with running_sandbox(status_delay_s=delay) as sandbox:
        await customer_writes(sandbox, "hi")
        async with receiver() as (url, target):
            created = await send(sandbox, Body="hello", StatusCallback=f"{url}/status")
            await target.wait_for(lambda got: len(got) >= 1)
            reached_when_queued_arrived = list(
                sandbox.app.sandbox.record.messages[created["sid"]].statuses
            )
            await target.wait_for(lambda got: len(got) == 4)

    assert statuses(target.got) == ["queued", "sent", "delivered", "read"]
    assert "read" not in reached_when_queued_arrived
    # Statuses are reached ``delay`` apart, but each arrival carries its own trip over
    # loopback, so two arrivals can be a little closer than the statuses they report.
    gaps = [later.at - earlier.at for earlier, later in pairwise(target.got)]
    assert all(gap >= 0.75 * delay for gap in gaps), gaps


async def test_a_free_form_message_outside_the_window_fails_with_63016(sandbox: Running) -> None:
    async with receiver() as (url, target):
        created = await send(sandbox, Body="hello", StatusCallback=f"{url}/status")
        await target.wait_for(lambda got: len(got) == 2)

    assert statuses(target.got) == ["queued", "failed"]
    assert target.got[-1].form["ErrorCode"] == "63016"
    assert sandbox.app.sandbox.record.messages[created["sid"]].error_code == 63016


async def test_a_template_goes_out_whatever_the_window(sandbox: Running) -> None:
    async with receiver() as (url, target):
        await send(sandbox, ContentSid=CONTENT_SID, StatusCallback=f"{url}/status")
        await target.wait_for(lambda got: "read" in statuses(got))

    assert "failed" not in statuses(target.got)


async def test_stop_opts_the_customer_out_until_start(sandbox: Running) -> None:
    await customer_writes(sandbox, "  stop ")
    async with httpx.AsyncClient(
        base_url=sandbox.url, auth=(ACCOUNT.sid, ACCOUNT.auth_token)
    ) as http:
        refused = await http.post(MESSAGES, data={"From": SENDER, "To": CUSTOMER, "Body": "x"})
        await customer_writes(sandbox, "START")
        accepted = await http.post(MESSAGES, data={"From": SENDER, "To": CUSTOMER, "Body": "x"})

    assert (refused.status_code, refused.json()["code"]) == (400, 21610)
    assert accepted.status_code == 201


async def test_a_dead_callback_target_is_retried_then_failed_and_blocks_nobody() -> None:
    async with running_sandbox(callback_attempts=3, read_receipts=False) as sandbox:
        await customer_writes(sandbox, "hi")
        async with receiver() as (url, target):
            dead = await send(
                sandbox, Body="to nowhere", StatusCallback="http://127.0.0.1:9/status"
            )
            alive = await send(sandbox, Body="somewhere", StatusCallback=f"{url}/status")
            await target.wait_for(lambda got: len(got) == 3)

            failed = await eventually(
                lambda: next(
                    (
                        w
                        for w in sandbox.app.sandbox.record.webhooks
                        if w.params["MessageSid"] == dead["sid"] and w.outcome == "failed"
                    ),
                    None,
                )
            )

    assert {r.form["MessageSid"] for r in target.got} == {alive["sid"]}
    assert len(failed.attempts) == 3
    assert all(attempt["error"] == "ct" for attempt in failed.attempts)


async def test_a_hung_callback_target_blocks_no_other_message_and_ends_failed() -> None:
    # Long enough that anything waiting behind the hung target would visibly wait for it.
    async with running_sandbox(
        callback_timeout_s=2.5, callback_attempts=2, read_receipts=False
    ) as sandbox:
        record = sandbox.app.sandbox.record
        await customer_writes(sandbox, "hi")
        async with hung_target() as hung, receiver() as (url, target):
            stuck = await send(sandbox, Body="to a hung target", StatusCallback=f"{hung.url}/s")
            await eventually(lambda: True if hung.open else None)
            alive = await send(sandbox, Body="to a healthy one", StatusCallback=f"{url}/status")
            await target.wait_for(lambda got: len(got) == 3)

            [first] = [w for w in record.webhooks if w.params["MessageSid"] == stuck["sid"]]
            still_hanging = (first.outcome, hung.open)
            stuck_status = record.messages[stuck["sid"]].status
            failed = await eventually(
                lambda: first if first.outcome == "failed" else None, timeout_s=30
            )

    assert still_hanging == ("pending", 1)
    assert statuses(target.got) == ["queued", "sent", "delivered"]
    assert {r.form["MessageSid"] for r in target.got} == {alive["sid"]}
    assert stuck_status == "delivered"  # the record moves on whatever its callbacks do
    assert failed.params["MessageStatus"] == "queued"
    assert [attempt["error"] for attempt in failed.attempts] == ["rt", "rt"]
    assert hung.connections >= 2


async def test_callbacks_out_of_order_and_duplicated_on_command(sandbox: Running) -> None:
    await customer_writes(sandbox, "hi")
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        changed = await http.put(
            "/sandbox/behaviour", json={"out_of_order": True, "duplicate": True}
        )
    assert changed.json()["duplicate"] is True
    async with receiver() as (url, target):
        for _ in range(5):
            await send(sandbox, Body="hello", StatusCallback=f"{url}/status")
        await target.wait_for(lambda got: len(got) == 5 * 6)  # 4 statuses + 2 repeats each

    per_message = Counter(r.form["MessageSid"] for r in target.got)
    assert set(per_message.values()) == {6}
    orders = {
        tuple(statuses([r for r in target.got if r.form["MessageSid"] == sid]))
        for sid in per_message
    }
    assert all(set(order) == {"queued", "sent", "delivered", "read"} for order in orders)


async def test_out_of_order_callbacks_break_the_order_for_some_message() -> None:
    in_order = ("queued", "sent", "delivered", "read")
    async with running_sandbox(random_seed=13) as sandbox:
        await customer_writes(sandbox, "hi")
        async with httpx.AsyncClient(base_url=sandbox.url) as http:
            await http.put("/sandbox/behaviour", json={"out_of_order": True})
        async with receiver() as (url, target):
            for _ in range(10):
                await send(sandbox, Body="hello", StatusCallback=f"{url}/status")
            await target.wait_for(lambda got: len(got) == 10 * 4)

    orders = [
        tuple(statuses([r for r in target.got if r.form["MessageSid"] == sid]))
        for sid in dict.fromkeys(r.form["MessageSid"] for r in target.got)
    ]
    assert all(sorted(order) == sorted(in_order) for order in orders)
    assert any(order != in_order for order in orders), orders


async def test_an_inbound_message_carries_every_field_twilio_sends_signed(sandbox: Running) -> None:
    async with receiver() as (url, target):
        result = await customer_writes(
            sandbox,
            "a photo",
            webhook_url=f"{url}/twilio/whatsapp",
            media=[{"url": "https://example.com/p.jpg", "content_type": "image/jpeg"}],
            profile_name="Ada",
        )

    assert result["outcome"] == "delivered"
    [got] = target.got
    assert signed_by(ACCOUNT.auth_token, got)
    assert got.form["MessageSid"] == result["message_sid"]
    assert result["message_sid"].startswith("MM")
    assert got.form["SmsMessageSid"] == got.form["SmsSid"] == got.form["MessageSid"]
    assert (got.form["From"], got.form["To"], got.form["Body"]) == (CUSTOMER, SENDER, "a photo")
    assert (got.form["NumMedia"], got.form["MediaUrl0"], got.form["MediaContentType0"]) == (
        "1",
        "https://example.com/p.jpg",
        "image/jpeg",
    )
    assert (got.form["ProfileName"], got.form["WaId"], got.form["SmsStatus"]) == (
        "Ada",
        CUSTOMER.removeprefix("whatsapp:+"),
        "received",
    )
    assert got.form["AccountSid"] == ACCOUNT.sid
    assert got.form["ApiVersion"] == "2010-04-01"
    assert got.headers["user-agent"].startswith("TwilioProxy")


@pytest.mark.parametrize(
    ("fragment", "answers", "attempts", "outcome"),
    [
        ("", [500], 1, "failed"),  # by default Twilio never retries an answer, even a 5xx
        ("#rc=3&rp=5xx", [500, 503], 3, "delivered"),
        ("#rc=2&rp=all", [500, 404, 500], 3, "failed"),
        ("#rc=3&rp=4xx", [500], 1, "failed"),
    ],
)
async def test_inbound_webhooks_follow_twilios_connection_overrides(
    sandbox: Running, fragment: str, answers: list[int], attempts: int, outcome: str
) -> None:
    async with receiver(answers) as (url, target):
        result = await customer_writes(sandbox, "hi", webhook_url=f"{url}/hook{fragment}")

    assert (len(result["attempts"]), result["outcome"]) == (attempts, outcome)
    assert len(target.got) == attempts
    tokens = {r.headers["i-twilio-idempotency-token"] for r in target.got}
    assert len(tokens) == 1  # a retry is the same delivery
    assert all(r.url == f"{url}/hook" for r in target.got)  # the fragment is never sent
    assert all(signed_by(ACCOUNT.auth_token, r) for r in target.got)


async def test_an_unreachable_webhook_is_retried_once_by_default(sandbox: Running) -> None:
    result = await customer_writes(sandbox, "hi", webhook_url="http://127.0.0.1:9/hook")

    assert [a["error"] for a in result["attempts"]] == ["ct", "ct"]
    assert result["outcome"] == "failed"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"from": CUSTOMER, "to": "whatsapp:+19990000000", "body": "x"}, "to"),
        ({"from": "+15550001111", "to": SENDER, "body": "x"}, "from"),
        ({"from": CUSTOMER, "to": SENDER, "body": 3}, "body"),
        ({"from": CUSTOMER, "to": SENDER, "media": ["https://x"]}, "media"),
        ([], "body"),
        (
            {"from": CUSTOMER, "to": SENDER, "webhook_url": "http://127.0.0.1:44293twilio"},
            "webhook_url",
        ),
    ],
)
async def test_a_bad_inbound_request_is_400_naming_the_field(
    sandbox: Running, spec: object, field: str
) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        response = await http.post("/sandbox/inbound", json=spec)

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert sandbox.app.sandbox.record.last_inbound == {}


def test_retry_rules_read_from_the_fragment() -> None:
    assert RetryRules.of("") == RetryRules()
    rules = RetryRules.of("rc=4&rp=4xx,rt&ct=1000&rt=2000")
    assert (rules.retries, rules.policy) == (4, frozenset({"4xx", "rt"}))
    assert (rules.connect_timeout_s, rules.read_timeout_s) == (1.0, 2.0)
    assert RetryRules.of("rp=all").policy == {"4xx", "5xx", "rt", "ct"}
    callback = RetryRules.of("", timeout_s=2.5)
    assert (callback.connect_timeout_s, callback.read_timeout_s) == (2.5, 2.5)
    assert RetryRules.of("rt=1000", timeout_s=2.5).read_timeout_s == 1.0
    assert not RetryRules().retry_after(500, None)
    assert RetryRules().retry_after(None, "ct")


async def test_an_account_without_a_webhook_url_records_the_customer_only() -> None:
    quiet = Account(sid="AC" + "3" * 32, auth_token="t", senders={SENDER: Sender(SENDER)})
    async with running_sandbox([quiet]) as sandbox:
        result = await customer_writes(sandbox, "hi")

        assert result["outcome"] == "not sent"
        assert (SENDER, CUSTOMER) in sandbox.app.sandbox.record.last_inbound
