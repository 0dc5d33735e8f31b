"""The Messages API through the real twilio Python library, sync and async, pointed at the
sandbox with ``client.api.base_url`` (its supported hook); every response shape checked
against Twilio's OpenAPI description."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from tests.tools.sandbox.openapi import validate_http_response
from tests.tools.sandbox.sandbox_testkit import (
    ACCOUNT,
    CONTENT_SID,
    CUSTOMER,
    KEY_SECRET,
    KEY_SID,
    OTHER_SENDER,
    SECOND,
    SENDER,
    SERVICE_SID,
    Running,
)

MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT.sid}/Messages.json"


def sync_client(
    sandbox: Running,
    user: str = ACCOUNT.sid,
    password: str = ACCOUNT.auth_token,
    account_sid: str | None = None,
) -> Client:
    client = Client(user, password, account_sid=account_sid)
    client.api.base_url = sandbox.url
    return client


@pytest.fixture
async def async_client(sandbox: Running) -> AsyncIterator[Client]:
    http = AsyncTwilioHttpClient()
    client = Client(ACCOUNT.sid, ACCOUNT.auth_token, http_client=http)
    client.api.base_url = sandbox.url
    yield client
    await http.close()


def raw(
    sandbox: Running, *, user: str = ACCOUNT.sid, password: str = ACCOUNT.auth_token
) -> httpx.AsyncClient:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return httpx.AsyncClient(base_url=sandbox.url, headers={"Authorization": f"Basic {token}"})


async def test_the_sync_client_creates_fetches_and_lists(sandbox: Running) -> None:
    client = sync_client(sandbox)

    def use() -> tuple[Any, Any, list[Any]]:
        created = client.messages.create(to=CUSTOMER, from_=SENDER, body="hello")
        fetched = client.messages(created.sid).fetch()
        listed = client.messages.list(to=CUSTOMER)
        return created, fetched, listed

    created, fetched, listed = await asyncio.to_thread(use)
    assert created.sid.startswith("SM")
    assert len(created.sid) == 34
    assert created.status == "queued"
    assert created.account_sid == ACCOUNT.sid
    assert created.to == CUSTOMER
    assert created.from_ == SENDER
    assert created.body == "hello"
    assert isinstance(created.date_created, datetime)
    assert fetched.sid == created.sid
    assert [m.sid for m in listed] == [created.sid]


async def test_the_async_client_creates_with_media_and_fetches(
    sandbox: Running, async_client: Client
) -> None:
    created = await async_client.messages.create_async(
        to=CUSTOMER,
        from_=SENDER,
        media_url=["https://example.com/a.jpg", "https://example.com/b.png"],
    )
    fetched = await async_client.messages(created.sid).fetch_async()

    assert created.sid.startswith("MM")
    assert created.num_media == "2"
    assert fetched.sid == created.sid
    stored = sandbox.app.sandbox.record.messages[created.sid]
    assert stored.media_urls == ["https://example.com/a.jpg", "https://example.com/b.png"]


async def test_a_template_and_a_messaging_service_are_accepted(async_client: Client) -> None:
    created = await async_client.messages.create_async(
        to=CUSTOMER,
        messaging_service_sid=SERVICE_SID,
        content_sid=CONTENT_SID,
        content_variables='{"1": "Ada"}',
    )

    assert created.messaging_service_sid == SERVICE_SID
    assert created.from_ == OTHER_SENDER
    assert created.status == "accepted"


async def test_an_api_key_opens_its_account(sandbox: Running) -> None:
    client = sync_client(sandbox, KEY_SID, KEY_SECRET, account_sid=ACCOUNT.sid)

    created = await asyncio.to_thread(
        lambda: client.messages.create(to=CUSTOMER, from_=SENDER, body="by key")
    )

    assert created.account_sid == ACCOUNT.sid


async def test_paging_follows_next_page_uri_through_every_page(
    sandbox: Running, async_client: Client
) -> None:
    sids = [
        (await async_client.messages.create_async(to=CUSTOMER, from_=SENDER, body=f"m{i}")).sid
        for i in range(7)
    ]
    await async_client.messages.create_async(to="whatsapp:+15550009999", from_=SENDER, body="x")

    listed = await async_client.messages.list_async(to=CUSTOMER, page_size=3)
    first = await async_client.messages.page_async(to=CUSTOMER, page_size=3)

    assert [m.sid for m in listed] == list(reversed(sids))  # newest first, across 3 pages
    assert first.next_page_url is not None
    assert "PageToken=PA" in first.next_page_url


async def test_date_sent_filters_find_messages_once_sent(
    sandbox: Running, async_client: Client
) -> None:
    created = await async_client.messages.create_async(to=CUSTOMER, from_=SENDER, body="hi")
    sent = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    sandbox.app.sandbox.record.messages[created.sid].advance("sent", sent.timestamp(), None)
    await async_client.messages.create_async(to=CUSTOMER, from_=SENDER, body="not yet sent")

    on = await async_client.messages.list_async(date_sent=sent.replace(microsecond=0))
    off = await async_client.messages.list_async(date_sent=sent + timedelta(seconds=1))
    before = await async_client.messages.list_async(date_sent_before=sent + timedelta(days=1))
    after = await async_client.messages.list_async(date_sent_after=sent + timedelta(days=1))

    async with raw(sandbox) as http:
        by_day = await http.get(MESSAGES, params={"DateSent": "2026-03-04"})
        bad = await http.get(MESSAGES, params={"DateSent<": "yesterday"})
    assert [m["sid"] for m in by_day.json()["messages"]] == [created.sid]
    assert [m.sid for m in on] == [created.sid]
    assert [m.sid for m in before] == [created.sid]
    assert off == []
    assert after == []
    assert bad.status_code == 400
    assert "DateSent<" in bad.json()["message"]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "", "from_": SENDER, "body": "x"}, 21604),
        ({"to": "+15550001111", "from_": SENDER, "body": "x"}, 21211),
        ({"to": "whatsapp:15550001111", "from_": SENDER, "body": "x"}, 21211),
        ({"to": CUSTOMER, "from_": "whatsapp:+1", "body": "x"}, 21212),
        ({"to": CUSTOMER, "from_": "whatsapp:+19998887777", "body": "x"}, 63007),
        ({"to": CUSTOMER, "from_": SENDER}, 21602),
        ({"to": CUSTOMER, "from_": SENDER, "body": "x" * 1601}, 21617),
        ({"to": CUSTOMER, "from_": SENDER, "content_sid": "HX" + "f" * 32}, 21655),
        ({"to": CUSTOMER, "messaging_service_sid": "MG" + "0" * 32, "body": "x"}, 21701),
        ({"to": CUSTOMER, "from_": SENDER, "body": "x", "status_callback": "nowhere"}, 21609),
    ],
)
async def test_validation_errors_raise_the_librarys_exception_with_twilios_code(
    sandbox: Running, async_client: Client, fields: dict[str, Any], code: int
) -> None:
    client = sync_client(sandbox)
    with pytest.raises(TwilioRestException) as sync_error:
        await asyncio.to_thread(lambda: client.messages.create(**fields))
    with pytest.raises(TwilioRestException) as async_error:
        await async_client.messages.create_async(**fields)

    for error in (sync_error.value, async_error.value):
        assert (error.code, error.status) == (code, 400)
    assert sandbox.app.sandbox.record.messages == {}


async def test_a_customer_who_sent_stop_is_21610_to_both_python_clients_until_start(
    sandbox: Running, async_client: Client
) -> None:
    client = sync_client(sandbox)

    async def customer_writes(body: str) -> None:
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as http:
            wrote = await http.post(
                "/sandbox/inbound", json={"from": CUSTOMER, "to": SENDER, "body": body}
            )
        assert wrote.status_code == 200, wrote.text

    await customer_writes("STOP")
    with pytest.raises(TwilioRestException) as sync_error:
        await asyncio.to_thread(
            lambda: client.messages.create(to=CUSTOMER, from_=SENDER, body="after stop")
        )
    with pytest.raises(TwilioRestException) as async_error:
        await async_client.messages.create_async(to=CUSTOMER, from_=SENDER, body="after stop")
    await customer_writes("START")
    created = await asyncio.to_thread(
        lambda: client.messages.create(to=CUSTOMER, from_=SENDER, body="after start")
    )

    for error in (sync_error.value, async_error.value):
        assert (error.code, error.status) == (21610, 400)
    assert [m.body for m in sandbox.app.sandbox.record.messages.values()] == ["after start"]
    assert created.status == "queued"


@pytest.mark.parametrize(
    ("user", "password"),
    [
        (ACCOUNT.sid, "wrong"),
        (KEY_SID, "wrong"),
        ("AC" + "9" * 32, "x"),
        (SECOND.sid, SECOND.auth_token),
    ],
    ids=["wrong token", "wrong key secret", "unknown account", "another account's path"],
)
async def test_wrong_credentials_are_401_with_code_20003(
    sandbox: Running, user: str, password: str
) -> None:
    client = sync_client(sandbox, user, password, account_sid=ACCOUNT.sid)
    with pytest.raises(TwilioRestException) as error:
        await asyncio.to_thread(lambda: client.messages.create(to=CUSTOMER, from_=SENDER, body="x"))

    assert (error.value.code, error.value.status) == (20003, 401)


async def test_an_unknown_message_is_404_with_code_20404(async_client: Client) -> None:
    with pytest.raises(TwilioRestException) as error:
        await async_client.messages("SM" + "0" * 32).fetch_async()

    assert (error.value.code, error.value.status) == (20404, 404)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"To=%ZZ&&=", 400),
        (b"\xff\xfe", 400),
        (b"Body=" + b"x" * (64 * 1024), 413),
    ],
    ids=["malformed form", "not utf-8", "over 64 KiB"],
)
async def test_a_bad_body_is_a_twilio_error_never_a_500(
    sandbox: Running, body: bytes, status: int
) -> None:
    async with raw(sandbox) as http:
        response = await http.post(
            MESSAGES, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )

    assert response.status_code == status
    assert response.json()["code"] == 20001
    validate_http_response(response)


async def test_every_kind_of_response_matches_twilios_openapi_description(
    sandbox: Running,
) -> None:
    sandbox.app.sandbox.record.saw_inbound(SENDER, CUSTOMER, "hi", datetime.now(UTC).timestamp())
    calls: list[Callable[[httpx.AsyncClient], Any]] = [
        lambda http: http.post(MESSAGES, data={"To": CUSTOMER, "From": SENDER, "Body": "a"}),
        lambda http: http.post(
            MESSAGES,
            data={"To": CUSTOMER, "MessagingServiceSid": SERVICE_SID, "ContentSid": CONTENT_SID},
        ),
        lambda http: http.post(
            MESSAGES, data={"To": CUSTOMER, "From": SENDER, "MediaUrl": ["https://e.com/1.jpg"]}
        ),
        lambda http: http.post(MESSAGES, data={"To": "bad", "From": SENDER, "Body": "a"}),
        lambda http: http.get(MESSAGES, params={"PageSize": "1"}),
        lambda http: http.get(MESSAGES, params={"To": CUSTOMER, "DateSent>": "2020-01-01"}),
        lambda http: http.get(MESSAGES, params={"PageSize": "0"}),
        lambda http: http.get(f"/2010-04-01/Accounts/{ACCOUNT.sid}/Messages/SM{'0' * 32}.json"),
    ]
    async with raw(sandbox) as http:
        responses = [await call(http) for call in calls]
        first = responses[0].json()
        responses.append(
            await http.get(f"/2010-04-01/Accounts/{ACCOUNT.sid}/Messages/{first['sid']}.json")
        )
        await asyncio.sleep(0.2)  # statuses move on: a fetched message is sent, delivered, read
        responses.append(
            await http.get(f"/2010-04-01/Accounts/{ACCOUNT.sid}/Messages/{first['sid']}.json")
        )
    async with raw(sandbox, password="wrong") as http:
        responses.append(await http.get(MESSAGES))

    assert [r.status_code for r in responses] == [
        201,
        201,
        201,
        400,
        200,
        200,
        400,
        404,
        200,
        200,
        401,
    ]
    assert responses[-2].json()["status"] == "read"
    for response in responses:
        validate_http_response(response)
