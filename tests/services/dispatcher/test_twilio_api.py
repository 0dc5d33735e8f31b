"""The adapter over the real twilio asyncio client, against the sandbox over loopback: each
fault the sandbox injects comes back as the outcome the error table gives it."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import pytest

from tests.services.dispatcher.dispatcher_testkit import add_fault, sandbox_messages, twilio_api
from tests.tools.sandbox.sandbox_testkit import (
    CONTENT_SID,
    CUSTOMER,
    SENDER,
    Running,
    running_sandbox,
)
from wamesh_dispatcher.outcomes import Action, Outcome
from wamesh_dispatcher.twilio_api import Content, Found, Sent, TwilioApi

HELLO = Content(body="hello")
CALLBACK = "https://ingress.example/twilio/status"


def an_hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


async def test_a_create_returns_the_sid_the_sandbox_recorded(sandbox: Running) -> None:
    async with twilio_api(sandbox.url) as api:
        sent = await api.create(to=CUSTOMER, from_=SENDER, content=HELLO, status_callback=CALLBACK)

    [message] = await sandbox_messages(sandbox, to=CUSTOMER)
    assert isinstance(sent, Sent)
    assert sent.sid.startswith("SM")
    assert (message["sid"], message["body"], message["from"]) == (sent.sid, "hello", SENDER)
    assert sandbox.app.sandbox.record.messages[sent.sid].status_callback == CALLBACK


async def test_a_template_goes_with_its_variables_and_media_with_their_urls(
    sandbox: Running,
) -> None:
    template = Content(content_sid=CONTENT_SID, content_variables={"1": "Ada", "2": "12:30"})
    picture = Content(body="see", media_urls=("https://cdn.example/a.png",))

    async with twilio_api(sandbox.url) as api:
        sent = [await api.create(to=CUSTOMER, from_=SENDER, content=c) for c in (template, picture)]

    by_sid = {m["sid"]: m for m in await sandbox_messages(sandbox, to=CUSTOMER)}
    assert all(isinstance(s, Sent) for s in sent)
    first, second = (by_sid[s.sid] for s in sent if isinstance(s, Sent))
    assert first["content_sid"] == CONTENT_SID
    assert json.loads(first["content_variables"]) == {"1": "Ada", "2": "12:30"}
    assert (second["body"], second["media_urls"]) == ("see", ["https://cdn.example/a.png"])


@pytest.mark.parametrize(
    ("status", "code", "action"),
    [
        (429, 20429, Action.RETRY),
        (429, 63018, Action.RETRY),
        (500, 20500, Action.AMBIGUOUS),
        (503, 20503, Action.AMBIGUOUS),
        (400, 21610, Action.OPT_OUT),
        (400, 21211, Action.FINAL),
        (400, 63003, Action.FINAL),
        (401, 20003, Action.PAUSE_SENDER),
    ],
)
async def test_a_refused_create_comes_back_as_its_outcome_not_an_exception(
    sandbox: Running, status: int, code: int, action: Action
) -> None:
    await add_fault(sandbox, status=status, code=code)

    async with twilio_api(sandbox.url) as api:
        outcome = await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)

    assert isinstance(outcome, Outcome)
    assert (outcome.action, outcome.code) == (action, code)
    assert await sandbox_messages(sandbox) == []


async def test_a_5xx_create_made_nothing_and_the_lookup_says_so(sandbox: Running) -> None:
    await add_fault(sandbox, status=500, code=20500)

    async with twilio_api(sandbox.url) as api:
        outcome = await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)
        found = await api.find_sent(to=CUSTOMER, from_=SENDER, since=an_hour_ago(), content=HELLO)

    assert isinstance(outcome, Outcome)
    assert outcome.action is Action.AMBIGUOUS
    assert found == Found(())


async def test_a_reset_before_the_record_is_ambiguous_and_nothing_is_found(
    sandbox: Running,
) -> None:
    await add_fault(sandbox, reset="before")

    async with twilio_api(sandbox.url) as api:
        outcome = await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)
        found = await api.find_sent(to=CUSTOMER, from_=SENDER, since=an_hour_ago(), content=HELLO)

    assert isinstance(outcome, Outcome)
    assert outcome.action is Action.AMBIGUOUS
    assert found == Found(())
    assert await sandbox_messages(sandbox) == []


async def test_a_reset_after_the_record_is_ambiguous_and_the_lookup_finds_it(
    sandbox: Running,
) -> None:
    await add_fault(sandbox, reset="after")

    async with twilio_api(sandbox.url) as api:
        outcome = await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)
        found = await api.find_sent(to=CUSTOMER, from_=SENDER, since=an_hour_ago(), content=HELLO)

    [message] = await sandbox_messages(sandbox, to=CUSTOMER)
    assert isinstance(outcome, Outcome)
    assert outcome.action is Action.AMBIGUOUS
    assert found == Found((message["sid"],))


async def test_the_lookup_finds_a_message_twilio_has_not_sent_yet() -> None:
    # Queued at Twilio, so it has no DateSent: a DateSent filter would miss it and the
    # dispatcher would send it again.
    async with running_sandbox(status_delay_s=60.0) as slow:
        await add_fault(slow, reset="after")
        async with twilio_api(slow.url) as api:
            await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)
            found = await api.find_sent(
                to=CUSTOMER, from_=SENDER, since=an_hour_ago(), content=HELLO
            )
        [message] = await sandbox_messages(slow, to=CUSTOMER)

    assert message["date_sent"] is None
    assert found == Found((message["sid"],))


async def test_the_lookup_matches_only_the_same_content_sender_and_time(
    sandbox: Running,
) -> None:
    other_sender = "whatsapp:+14155230000"
    async with twilio_api(sandbox.url) as api:
        mine = await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)
        await api.create(to=CUSTOMER, from_=SENDER, content=Content(body="other"))
        await api.create(to=CUSTOMER, from_=other_sender, content=HELLO)
        found = await api.find_sent(to=CUSTOMER, from_=SENDER, since=an_hour_ago(), content=HELLO)
        later = await api.find_sent(
            to=CUSTOMER,
            from_=SENDER,
            since=datetime.now(UTC) + timedelta(minutes=1),
            content=HELLO,
        )

    assert isinstance(mine, Sent)
    assert found == Found((mine.sid,))
    assert later == Found(())


async def test_a_create_with_no_answer_in_time_is_ambiguous(sandbox: Running) -> None:
    await add_fault(sandbox, latency_ms=1500)

    async with twilio_api(sandbox.url, timeout_s=0.1) as api:
        outcome = await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)

    assert isinstance(outcome, Outcome)
    assert (outcome.action, outcome.reason) == (Action.AMBIGUOUS, "timed out")


async def test_a_create_that_cannot_connect_is_retried_without_a_lookup() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Closed now, so nothing listens there.

    async with twilio_api(f"http://127.0.0.1:{port}") as api:
        outcome = await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)
        found = await api.find_sent(to=CUSTOMER, from_=SENDER, since=an_hour_ago(), content=HELLO)

    assert isinstance(outcome, Outcome)
    assert outcome.action is Action.RETRY
    assert isinstance(found, Outcome)
    assert found.action is Action.RETRY


async def test_leaving_the_adapter_closes_its_http_session(sandbox: Running) -> None:
    async with twilio_api(sandbox.url) as api:
        await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)
        assert not api.closed

    assert api.closed


async def test_the_adapter_refuses_use_outside_its_context() -> None:
    api = TwilioApi("AC" + "0" * 32, "token")

    with pytest.raises(RuntimeError, match="async with"):
        await api.create(to=CUSTOMER, from_=SENDER, content=HELLO)
