"""Faults on command through the admin API (``/sandbox/faults``, ``/sandbox/rate-limits``),
observed as a sender meets them: through the real twilio Python library (and httpx for the
dropped connections), with what the sandbox recorded checked after each."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from tests.tools.sandbox.openapi import validate_http_response
from tests.tools.sandbox.sandbox_testkit import (
    ACCOUNT,
    CUSTOMER,
    OTHER_SENDER,
    SECOND,
    SENDER,
    SERVICE_SID,
    Running,
    eventually,
    receiver,
)
from wamesh_sandbox.errors import message_of

MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT.sid}/Messages.json"
OTHER_CUSTOMER = "whatsapp:+15550002222"
# What uvicorn logs when an app returns without answering a connection it still thinks is open.
UNANSWERED = "ASGI callable returned without starting response"


def sync_client(sandbox: Running) -> Client:
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token)
    client.api.base_url = sandbox.url
    return client


@pytest.fixture
async def async_client(sandbox: Running) -> AsyncIterator[Client]:
    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token, http_client=http)
    client.api.base_url = sandbox.url
    yield client
    await http.close()


async def admin(sandbox: Running, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as http:
        return await http.request(method, path, **kwargs)


async def add_fault(sandbox: Running, **spec: Any) -> dict[str, Any]:
    response = await admin(sandbox, "POST", "/sandbox/faults", json=spec)
    assert response.status_code == 201, response.text
    fault: dict[str, Any] = response.json()
    return fault


async def listed_faults(sandbox: Running) -> list[dict[str, Any]]:
    response = await admin(sandbox, "GET", "/sandbox/faults")
    assert response.status_code == 200, response.text
    faults: list[dict[str, Any]] = response.json()["faults"]
    return faults


async def set_rate_limit(sandbox: Running, **spec: Any) -> dict[str, Any]:
    response = await admin(sandbox, "PUT", "/sandbox/rate-limits", json=spec)
    assert response.status_code == 200, response.text
    described: dict[str, Any] = response.json()
    return described


async def create_or_error(client: Client, **fields: Any) -> tuple[Any, TwilioRestException | None]:
    """The created message, or the library's exception for a refused create."""
    try:
        return await client.messages.create_async(**fields), None
    except TwilioRestException as error:
        return None, error


def recorded(sandbox: Running) -> list[str]:
    return list(sandbox.app.sandbox.record.messages)


def ended(sandbox: Running, sid: str, status: str) -> bool | None:
    """For ``eventually``: True once the recorded message has reached ``status``."""
    return True if sandbox.app.sandbox.record.messages[sid].status == status else None


# -- errors instead of creates ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"), [(429, 20429), (500, 20500), (503, 20503), (401, 20003)]
)
async def test_a_faults_answer_matches_twilios_openapi_description(
    sandbox: Running, status: int, code: int
) -> None:
    await add_fault(sandbox, account_sid=ACCOUNT.sid, status=status, code=code)

    async with httpx.AsyncClient(
        base_url=sandbox.url, auth=(ACCOUNT.sid, ACCOUNT.auth_token)
    ) as http:
        response = await http.post(MESSAGES, data={"From": SENDER, "To": CUSTOMER, "Body": "x"})

    assert (response.status_code, response.json()["code"]) == (status, code)
    validate_http_response(response)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (429, 20429),
        (500, 20500),
        (503, 20503),
        (429, 63018),
        (400, 21610),
        (400, 21211),
        (401, 20003),
    ],
)
async def test_the_next_creates_fail_with_the_faults_status_and_code_then_succeed(
    sandbox: Running, status: int, code: int
) -> None:
    fault = await add_fault(sandbox, account_sid=ACCOUNT.sid, status=status, code=code, count=2)
    client = sync_client(sandbox)

    def create(body: str) -> Any:
        return client.messages.create(to=CUSTOMER, from_=SENDER, body=body)

    errors = []
    for attempt in range(2):
        with pytest.raises(TwilioRestException) as error:
            await asyncio.to_thread(create, f"refused {attempt}")
        errors.append(error.value)
        assert recorded(sandbox) == []
    created = await asyncio.to_thread(create, "accepted")

    assert [(e.status, e.code) for e in errors] == [(status, code), (status, code)]
    assert message_of(code) in errors[0].msg
    assert recorded(sandbox) == [created.sid]
    assert sandbox.app.sandbox.record.messages[created.sid].body == "accepted"
    [listed] = await listed_faults(sandbox)
    assert (listed["id"], listed["met"], listed["count"]) == (fault["id"], 2, 2)


async def test_a_code_alone_is_answered_with_its_usual_status(
    sandbox: Running, async_client: Client
) -> None:
    fault = await add_fault(sandbox, account_sid=ACCOUNT.sid, code=20503)
    _, error = await create_or_error(async_client, to=CUSTOMER, from_=SENDER, body="x")

    assert fault["status"] == 503
    assert error is not None
    assert (error.status, error.code) == (503, 20503)


async def test_a_fault_for_one_sender_hits_only_its_creates(
    sandbox: Running, async_client: Client
) -> None:
    await add_fault(sandbox, account_sid=ACCOUNT.sid, sender=OTHER_SENDER, code=20500, count=None)

    spared = [
        await async_client.messages.create_async(to=CUSTOMER, from_=SENDER, body=f"s{i}")
        for i in range(3)
    ]
    hit = [
        await create_or_error(async_client, to=CUSTOMER, from_=OTHER_SENDER, body=f"o{i}")
        for i in range(3)
    ]

    assert [(error.status, error.code) for _, error in hit if error] == [(500, 20500)] * 3
    assert recorded(sandbox) == [m.sid for m in spared]


async def test_a_fault_for_one_recipient_hits_only_creates_to_them(
    sandbox: Running, async_client: Client
) -> None:
    await add_fault(sandbox, account_sid=ACCOUNT.sid, recipient=CUSTOMER, code=20429, count=None)

    hit = [
        await create_or_error(async_client, to=CUSTOMER, from_=SENDER, body=f"c{i}")
        for i in range(3)
    ]
    spared = await async_client.messages.create_async(to=OTHER_CUSTOMER, from_=SENDER, body="other")

    assert [(error.status, error.code) for _, error in hit if error] == [(429, 20429)] * 3
    assert recorded(sandbox) == [spared.sid]


async def test_a_fault_for_one_account_spares_the_others(sandbox: Running) -> None:
    await add_fault(sandbox, account_sid=SECOND.sid, code=20500, count=None)

    created = await asyncio.to_thread(
        lambda: sync_client(sandbox).messages.create(to=CUSTOMER, from_=SENDER, body="x")
    )

    assert recorded(sandbox) == [created.sid]
    [fault] = await listed_faults(sandbox)
    assert fault["met"] == 0


async def test_a_fault_without_a_count_lasts_until_it_is_removed(
    sandbox: Running, async_client: Client
) -> None:
    fault = await add_fault(sandbox, account_sid=ACCOUNT.sid, code=20500, count=None)
    results = [
        await create_or_error(async_client, to=CUSTOMER, from_=SENDER, body=f"m{i}")
        for i in range(5)
    ]
    assert [error.code for _, error in results if error] == [20500] * 5
    assert (await listed_faults(sandbox))[0]["met"] == 5

    removed = await admin(sandbox, "DELETE", f"/sandbox/faults/{fault['id']}")
    again = await admin(sandbox, "DELETE", f"/sandbox/faults/{fault['id']}")
    created = await async_client.messages.create_async(to=CUSTOMER, from_=SENDER, body="ok")

    assert removed.status_code == 204
    assert (again.status_code, again.json()["field"]) == (404, "fault_id")
    assert await listed_faults(sandbox) == []
    assert recorded(sandbox) == [created.sid]


async def test_clearing_the_faults_removes_every_fault_and_rate_limit(
    sandbox: Running, async_client: Client
) -> None:
    await add_fault(sandbox, account_sid=ACCOUNT.sid, code=20500, count=None)
    await add_fault(sandbox, account_sid=ACCOUNT.sid, reset="before", count=None)
    await set_rate_limit(sandbox, account_sid=ACCOUNT.sid, per_second=0.001)

    cleared = await admin(sandbox, "DELETE", "/sandbox/faults")
    created = [
        await async_client.messages.create_async(to=CUSTOMER, from_=SENDER, body=f"m{i}")
        for i in range(3)
    ]

    assert cleared.json() == {"faults": [], "rate_limits": []}
    assert await listed_faults(sandbox) == []
    assert recorded(sandbox) == [m.sid for m in created]


# -- latency, dropped connections, late failures ---------------------------------------------


async def timed_create(client: Client, body: str) -> tuple[Any, float]:
    """The created message and how long the create took, in seconds."""
    started = time.monotonic()
    created = await client.messages.create_async(to=CUSTOMER, from_=SENDER, body=body)
    return created, time.monotonic() - started


async def test_a_fixed_latency_fault_delays_the_answer_at_least_that_long(
    sandbox: Running, async_client: Client
) -> None:
    await add_fault(sandbox, account_sid=ACCOUNT.sid, latency_ms=300)

    created, elapsed = await timed_create(async_client, "slow")

    [fault] = await listed_faults(sandbox)
    assert (fault["met"], fault["last_latency_ms"]) == (1, 300)
    assert elapsed >= 0.3
    assert created.status == "queued"
    assert recorded(sandbox) == [created.sid]


async def test_a_latency_range_draws_a_delay_per_create_each_waited_in_full(
    sandbox: Running, async_client: Client
) -> None:
    # Only lower bounds on time: how far above them a create ends is the machine's business.
    await add_fault(sandbox, account_sid=ACCOUNT.sid, latency_ms=50, latency_max_ms=250, count=5)

    drawn, created = [], []
    for index in range(5):
        message, elapsed = await timed_create(async_client, f"slow {index}")
        [fault] = await listed_faults(sandbox)
        drawn.append(fault["last_latency_ms"])
        created.append(message.sid)
        assert elapsed >= fault["last_latency_ms"] / 1000 >= 0.05

    assert all(50 <= ms <= 250 for ms in drawn), drawn
    assert len(set(drawn)) > 1, drawn
    assert recorded(sandbox) == created


def no_unanswered_error(caplog: pytest.LogCaptureFixture) -> bool:
    return not any(UNANSWERED in record.getMessage() for record in caplog.records)


async def test_a_reset_before_drops_the_connection_and_nothing_is_created(
    sandbox: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await add_fault(sandbox, account_sid=ACCOUNT.sid, reset="before", count=2)
    client = sync_client(sandbox)

    async with httpx.AsyncClient(
        base_url=sandbox.url, auth=(ACCOUNT.sid, ACCOUNT.auth_token)
    ) as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await http.post(MESSAGES, data={"From": SENDER, "To": CUSTOMER, "Body": "httpx"})
    with pytest.raises(requests.exceptions.ConnectionError):
        await asyncio.to_thread(
            lambda: client.messages.create(to=CUSTOMER, from_=SENDER, body="twilio")
        )

    assert recorded(sandbox) == []
    assert await asyncio.to_thread(lambda: client.messages.list(to=CUSTOMER)) == []
    assert (await listed_faults(sandbox))[0]["met"] == 2
    assert no_unanswered_error(caplog)


async def test_a_reset_after_drops_the_answer_but_the_message_exists(
    sandbox: Running, caplog: pytest.LogCaptureFixture
) -> None:
    # The ambiguous case: the sender saw a connection error, yet Twilio has the message and
    # sends it; only looking it up tells.
    caplog.set_level(logging.INFO)
    await add_fault(sandbox, account_sid=ACCOUNT.sid, reset="after", count=2)
    client = sync_client(sandbox)

    async with httpx.AsyncClient(
        base_url=sandbox.url, auth=(ACCOUNT.sid, ACCOUNT.auth_token)
    ) as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await http.post(MESSAGES, data={"From": SENDER, "To": CUSTOMER, "Body": "httpx"})
    with pytest.raises(requests.exceptions.ConnectionError):
        await asyncio.to_thread(
            lambda: client.messages.create(to=CUSTOMER, from_=SENDER, body="twilio")
        )

    listed = await asyncio.to_thread(lambda: client.messages.list(to=CUSTOMER))
    assert sorted(m.body for m in listed) == ["httpx", "twilio"]
    assert sorted(m.sid for m in listed) == sorted(recorded(sandbox))
    assert no_unanswered_error(caplog)


@pytest.mark.parametrize(("outcome", "code"), [("failed", 20500), ("undelivered", 63018)])
async def test_an_outcome_fault_accepts_the_message_then_ends_it_with_the_code(
    sandbox: Running, async_client: Client, outcome: str, code: int
) -> None:
    # The customer wrote in, so without the fault the message would be delivered.
    wrote = await admin(
        sandbox, "POST", "/sandbox/inbound", json={"from": CUSTOMER, "to": SENDER, "body": "hi"}
    )
    assert wrote.status_code == 200, wrote.text
    await add_fault(sandbox, account_sid=ACCOUNT.sid, outcome=outcome, code=code)

    async with receiver() as (url, target):
        created = await async_client.messages.create_async(
            to=CUSTOMER, from_=SENDER, body="doomed", status_callback=f"{url}/status"
        )
        plain = await async_client.messages.create_async(to=CUSTOMER, from_=SENDER, body="fine")

        await eventually(lambda: ended(sandbox, created.sid, outcome))
        await eventually(lambda: ended(sandbox, plain.sid, "read"))
        await target.wait_for(lambda got: any(r.form["MessageStatus"] == outcome for r in got))

    listed = await admin(sandbox, "GET", "/sandbox/messages", params={"to": CUSTOMER})
    by_sid = {m["sid"]: m for m in listed.json()["messages"]}
    doomed, fine = by_sid[created.sid], by_sid[plain.sid]
    assert created.status == "queued"  # accepted: 201
    assert doomed["status"] == doomed["statuses"][-1] == outcome
    assert doomed["error_code"] == code
    assert (fine["status"], fine["error_code"]) == ("read", None)
    fetched = await async_client.messages(created.sid).fetch_async()
    assert (fetched.status, fetched.error_code) == (outcome, code)
    last = target.got[-1].form
    assert (last["MessageStatus"], last["ErrorCode"]) == (outcome, str(code))


# -- rate limits ------------------------------------------------------------------------------


async def quick_creates(client: Client, sender: str, count: int) -> list[TwilioRestException]:
    """``count`` creates from ``sender`` at once; the refusals among them."""
    results = await asyncio.gather(
        *(create_or_error(client, to=CUSTOMER, from_=sender, body=f"q{i}") for i in range(count))
    )
    return [error for _, error in results if error is not None]


async def test_past_the_rate_limit_creates_are_429_with_code_20429(
    sandbox: Running, async_client: Client
) -> None:
    described = await set_rate_limit(sandbox, account_sid=ACCOUNT.sid, per_second=2)

    refused = await quick_creates(async_client, SENDER, 10)

    assert described["rate_limits"] == [
        {"account_sid": ACCOUNT.sid, "sender": None, "per_second": 2}
    ]
    assert refused, "10 creates at once must go past 2 a second"
    assert len(refused) < 10, "the first creates are within the limit"
    assert {(error.status, error.code) for error in refused} == {(429, 20429)}
    assert len(recorded(sandbox)) == 10 - len(refused)


async def test_a_sender_scoped_rate_limit_spares_the_accounts_other_senders(
    sandbox: Running, async_client: Client
) -> None:
    await set_rate_limit(sandbox, account_sid=ACCOUNT.sid, sender=SENDER, per_second=2)

    other = await quick_creates(async_client, OTHER_SENDER, 10)
    limited = await quick_creates(async_client, SENDER, 10)

    assert other == []
    assert limited
    assert {(error.status, error.code) for error in limited} == {(429, 20429)}


async def test_an_account_wide_rate_limit_counts_each_sender_separately(
    sandbox: Running, async_client: Client
) -> None:
    await set_rate_limit(sandbox, account_sid=ACCOUNT.sid, per_second=3)

    first = await quick_creates(async_client, SENDER, 10)
    second = await quick_creates(async_client, OTHER_SENDER, 10)

    # Each sender starts with a full second's allowance of its own, whatever the other
    # sender spent just before.
    assert 10 - len(first) >= 3
    assert 10 - len(second) >= 3
    assert first
    assert second
    assert {(error.status, error.code) for error in first + second} == {(429, 20429)}
    assert len(recorded(sandbox)) == 20 - len(first) - len(second)


# -- refusals -------------------------------------------------------------------------------

A = ACCOUNT.sid


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"account_sid": A, "code": 20429, "colour": "red"}, "colour"),
        ({"code": 20429}, "account_sid"),
        ({"account_sid": "", "code": 20429}, "account_sid"),
        ({"account_sid": A, "code": 20429, "count": 0}, "count"),
        ({"account_sid": A, "code": 20429, "count": "2"}, "count"),
        ({"account_sid": A, "code": 12345}, "code"),
        ({"account_sid": A, "status": 500}, "code"),
        ({"account_sid": A, "code": 20429, "status": 200}, "status"),
        ({"account_sid": A, "latency_ms": 100, "latency_max_ms": 50}, "latency_max_ms"),
        ({"account_sid": A, "latency_ms": -1}, "latency_ms"),
        ({"account_sid": A, "reset": "sideways"}, "reset"),
        ({"account_sid": A, "outcome": "failed"}, "outcome"),
        ({"account_sid": A, "outcome": "failed", "code": 20500, "status": 500}, "outcome"),
        ({"account_sid": A, "outcome": "lost", "code": 20500}, "outcome"),
        ({"account_sid": A}, "code"),
        ([{"account_sid": A, "code": 20429}], "body"),
    ],
    ids=[
        "unknown field",
        "no account_sid",
        "empty account_sid",
        "count 0",
        "count a string",
        "code not in the catalogue",
        "status without code",
        "status not an error",
        "latency_max_ms below latency_ms",
        "negative latency",
        "reset sideways",
        "outcome without code",
        "outcome with a status",
        "unknown outcome",
        "nothing to do",
        "not an object",
    ],
)
async def test_a_bad_fault_is_400_naming_the_field(
    sandbox: Running, spec: object, field: str
) -> None:
    response = await admin(sandbox, "POST", "/sandbox/faults", json=spec)

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error", "field"}
    assert body["field"] == field
    assert body["error"].startswith(f"{field}: ")
    assert await listed_faults(sandbox) == []


@pytest.mark.parametrize("path", ["/sandbox/faults", "/sandbox/rate-limits", "/sandbox/behaviour"])
async def test_a_body_that_is_not_json_is_400_naming_the_body(sandbox: Running, path: str) -> None:
    method = "POST" if path == "/sandbox/faults" else "PUT"
    response = await admin(
        sandbox, method, path, content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["field"] == "body"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"account_sid": A, "per_second": 0}, "per_second"),
        ({"account_sid": A, "per_second": -2}, "per_second"),
        ({"per_second": 2}, "account_sid"),
        ({"account_sid": A}, "per_second"),
        ({"account_sid": A, "per_second": 2, "burst": 5}, "burst"),
        ({"account_sid": A, "per_second": "2"}, "per_second"),
    ],
    ids=["per_second 0", "negative", "no account_sid", "no per_second", "unknown", "a string"],
)
async def test_a_bad_rate_limit_is_400_naming_the_field(
    sandbox: Running, spec: dict[str, Any], field: str
) -> None:
    response = await admin(sandbox, "PUT", "/sandbox/rate-limits", json=spec)
    listed = await admin(sandbox, "GET", "/sandbox/faults")

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert listed.json()["rate_limits"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"read_receipts": "yes"}, "read_receipts"),
        ({"status_delay_s": "fast"}, "status_delay_s"),
        ({"status_delay_s": -1}, "status_delay_s"),
        ({"out_of_order": 1}, "out_of_order"),
    ],
)
async def test_a_bad_behaviour_change_is_400_naming_the_field(
    sandbox: Running, change: dict[str, Any], field: str
) -> None:
    before = (await admin(sandbox, "GET", "/sandbox/behaviour")).json()

    refused = await admin(sandbox, "PUT", "/sandbox/behaviour", json=change)
    accepted = await admin(sandbox, "PUT", "/sandbox/behaviour", json={"duplicate": True})

    assert refused.status_code == 400
    assert refused.json()["field"] == field
    assert accepted.status_code == 200
    assert accepted.json() == {**before, "duplicate": True}


async def test_an_invalid_create_gets_its_own_error_and_leaves_the_fault(
    sandbox: Running, async_client: Client
) -> None:
    await add_fault(sandbox, account_sid=ACCOUNT.sid, code=20429)

    _, invalid = await create_or_error(async_client, to="+1555", from_=SENDER, body="x")
    _, faulted = await create_or_error(async_client, to=CUSTOMER, from_=SENDER, body="x")

    assert invalid is not None
    assert invalid.code == 21211
    assert faulted is not None
    assert faulted.code == 20429


async def test_a_sender_fault_meets_creates_through_a_messaging_service(
    sandbox: Running, async_client: Client
) -> None:
    await add_fault(sandbox, account_sid=ACCOUNT.sid, sender=OTHER_SENDER, code=20503)

    _, error = await create_or_error(
        async_client, to=CUSTOMER, messaging_service_sid=SERVICE_SID, body="x"
    )

    assert error is not None
    assert error.code == 20503
