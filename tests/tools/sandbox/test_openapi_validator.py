"""The validator the sandbox's tests rely on: Twilio's own examples pass, and each kind of
departure from Twilio's description (or from its error shape) is caught and named."""

from __future__ import annotations

import copy
import functools
import json
import re
from typing import Any

import pytest

from tests.tools.sandbox.openapi import (
    SPEC_PATH,
    ResponseMismatch,
    is_absolute_uri,
    is_rfc2822_date,
    is_twilio_uri,
    validate_response,
)

SANDBOX = "http://127.0.0.1:8765"
ACCOUNT = "AC" + "a" * 32
MESSAGE = "SM" + "b" * 32
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
MESSAGES = SANDBOX + MESSAGES_PATH
ONE_MESSAGE = f"{SANDBOX}/2010-04-01/Accounts/{ACCOUNT}/Messages/{MESSAGE}.json"
LIST_TEMPLATE = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
ONE_TEMPLATE = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"
JSON = "application/json"


@functools.cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SPEC_PATH.read_bytes())
    return document


def _examples(template: str, method: str, status: str) -> dict[str, Any]:
    media = _document()["paths"][template][method]["responses"][status]["content"][JSON]
    examples: dict[str, Any] = media["examples"]
    return examples


def _example(template: str, method: str, status: str, name: str) -> Any:
    return copy.deepcopy(_examples(template, method, status)[name]["value"])


def _url(template: str) -> str:
    values = {"AccountSid": ACCOUNT, "Sid": MESSAGE, "MessageSid": MESSAGE}
    return SANDBOX + re.sub(r"\{(\w+)\}", lambda name: values.get(name[1], "X1"), template)


def _message_examples() -> list[Any]:
    """Every example the description gives for the Messages operations and their children."""
    cases = []
    for template, item in _document()["paths"].items():
        if "/Messages" not in template:
            continue
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, response in operation["responses"].items():
                for name in response.get("content", {}).get(JSON, {}).get("examples", {}):
                    cases.append(
                        pytest.param(
                            template, method, status, name, id=f"{method} {template} {name}"
                        )
                    )
    return cases


def _send(body: Any, *, method: str = "POST", url: str = MESSAGES, status: int = 201) -> None:
    validate_response(method, url, status, JSON, json.dumps(body).encode())


def _mismatch(body: Any, **kwargs: Any) -> ResponseMismatch:
    with pytest.raises(ResponseMismatch) as caught:
        _send(body, **kwargs)
    return caught.value


def _created() -> dict[str, Any]:
    created: dict[str, Any] = _example(LIST_TEMPLATE, "post", "201", "create")
    return created


def test_the_examples_cover_create_list_and_fetch() -> None:
    covered = {(case.values[0], case.values[1]) for case in _message_examples()}
    assert {(LIST_TEMPLATE, "post"), (LIST_TEMPLATE, "get"), (ONE_TEMPLATE, "get")} <= covered


@pytest.mark.parametrize(("template", "method", "status", "name"), _message_examples())
def test_twilios_own_examples_pass(template: str, method: str, status: str, name: str) -> None:
    body = _example(template, method, status, name)
    _send(body, method=method.upper(), url=_url(template), status=int(status))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sid", "XX123"),
        ("account_sid", "AC123"),
        ("error_code", "abc"),
        ("date_created", "yesterday"),
        ("date_sent", "Fri, 24 Aug 2023 05:01:45 +0000"),  # the 24th was a Thursday
        ("date_updated", "2023-08-24T05:01:45Z"),
        ("status", "sending-ish"),
        ("direction", "sideways"),
        ("num_media", 0),  # Twilio sends counts as strings
        ("subresource_uris", ["media"]),
    ],
)
def test_a_wrong_value_is_named(field: str, value: object) -> None:
    mismatch = _mismatch({**_created(), field: value})

    assert mismatch.fields == {field}
    assert (mismatch.method, mismatch.path, mismatch.status) == ("POST", MESSAGES_PATH, 201)
    assert mismatch.operation == LIST_TEMPLATE
    assert f"POST {MESSAGES_PATH}" in str(mismatch)
    assert "201" in str(mismatch)
    assert f"  {field}: " in str(mismatch)


def test_a_missing_property_is_named() -> None:
    # The description lists no required properties; Twilio still sends every one of them.
    body = _created()
    del body["sid"]

    mismatch = _mismatch(body)

    assert mismatch.fields == {"sid"}
    assert "'sid' is a required property" in str(mismatch)


def test_every_wrong_field_is_reported_at_once() -> None:
    body = {**_created(), "sid": "XX123", "error_code": "abc", "status": "sending-ish"}

    assert _mismatch(body).fields == {"sid", "error_code", "status"}


def test_a_wrong_message_inside_a_list_is_named_by_its_place() -> None:
    page = _example(LIST_TEMPLATE, "get", "200", "readFullPage1")
    page["messages"][1]["status"] = "sending-ish"

    mismatch = _mismatch(page, method="GET", status=200)

    assert mismatch.fields == {"messages[1].status"}


def test_a_uri_field_must_hold_a_uri() -> None:
    page = _example(LIST_TEMPLATE, "get", "200", "readFullPage1")
    page["first_page_uri"] = "page one"

    assert _mismatch(page, method="GET", status=200).fields == {"first_page_uri"}


def test_fetch_is_checked_against_its_own_operation() -> None:
    body = {**_created(), "date_created": "yesterday"}

    mismatch = _mismatch(body, method="GET", url=ONE_MESSAGE, status=200)

    assert mismatch.operation == ONE_TEMPLATE
    assert mismatch.fields == {"date_created"}


def test_formats_twilio_defines_for_itself_do_not_fail() -> None:
    body = {
        **_created(),
        "from": "whatsapp:+14155550100",  # phone-number
        "to": "whatsapp:+14155550199",
        "price_unit": "usd",  # currency
        "price": "-0.00750",
        "subresource_uris": {},  # uri-map
    }

    _send(body)


def test_nulls_pass_where_the_description_allows_them() -> None:
    body = {**_created(), "date_sent": None, "error_code": None, "messaging_service_sid": None}

    _send(body)


def test_the_sandbox_host_and_a_query_string_do_not_matter() -> None:
    page = _example(LIST_TEMPLATE, "get", "200", "readFullPage1")

    validate_response("GET", MESSAGES + "?PageSize=2&Page=0", 200, JSON, json.dumps(page).encode())
    validate_response(
        "GET", MESSAGES_PATH, 200, "application/json; charset=utf-8", json.dumps(page).encode()
    )


def test_an_undescribed_path_is_refused() -> None:
    mismatch = _mismatch({}, method="GET", url=f"{SANDBOX}/2010-04-01/Nowhere.json", status=200)

    assert mismatch.fields == {"(operation)"}
    assert mismatch.operation is None


def test_an_undescribed_method_is_refused() -> None:
    assert _mismatch(_created(), method="PUT").fields == {"(operation)"}


def test_an_undescribed_success_status_is_refused() -> None:
    mismatch = _mismatch(_created(), status=200)

    assert mismatch.fields == {"(status)"}
    assert "201" in str(mismatch)


@pytest.mark.parametrize(
    ("content_type", "body", "field"),
    [
        ("text/html", b"<p>hi</p>", "(content-type)"),
        (JSON, b"", "(body)"),
        (JSON, b"{not json", "(body)"),
        (JSON, b"[]", "(body)"),
    ],
)
def test_a_body_that_is_not_a_message_is_refused(
    content_type: str, body: bytes, field: str
) -> None:
    with pytest.raises(ResponseMismatch) as caught:
        validate_response("POST", MESSAGES, 201, content_type, body)

    assert caught.value.fields == {field}


def test_described_headers_are_checked_when_given() -> None:
    body = json.dumps(_created()).encode()
    header = "Access-Control-Allow-Credentials"

    validate_response("POST", MESSAGES, 201, JSON, body, headers={header: "true", "X-Other": "1"})
    with pytest.raises(ResponseMismatch) as caught:
        validate_response("POST", MESSAGES, 201, JSON, body, headers={header: "maybe"})

    assert caught.value.fields == {f"(header {header})"}


def _error(code: int = 20404, status: int = 404) -> dict[str, Any]:
    return {
        "code": code,
        "message": "The requested resource was not found",
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (ONE_MESSAGE, _error()),
        (MESSAGES, _error(21211, 400)),
        (MESSAGES, _error(20429, 429)),
        (MESSAGES, _error(20500, 500)),
        (f"{SANDBOX}/2010-04-01/Nowhere.json", _error()),
    ],
)
def test_a_twilio_error_passes(url: str, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()

    validate_response("GET", url, body["status"], "application/json; charset=utf-8", payload)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"code": None}, "code"),
        ({"message": None}, "message"),
        ({"more_info": None}, "more_info"),
        ({"status": None}, "status"),
        ({"code": "20404"}, "code"),
        ({"message": 404}, "message"),
        ({"more_info": "see the docs"}, "more_info"),
        ({"more_info": "/docs/errors/20404"}, "more_info"),
        ({"status": 400}, "status"),  # not the HTTP status it came with
        ({"status": "404"}, "status"),
    ],
    ids=[
        "no code",
        "no message",
        "no more_info",
        "no status",
        "code a string",
        "message a number",
        "more_info not a uri",
        "more_info relative",
        "status not the HTTP one",
        "status a string",
    ],
)
def test_a_wrong_error_is_named(change: dict[str, Any], field: str) -> None:
    body = {key: value for key, value in {**_error(), **change}.items() if value is not None}

    mismatch = _mismatch(body, method="GET", url=ONE_MESSAGE, status=404)

    assert mismatch.fields == {field}
    assert mismatch.status == 404
    assert mismatch.operation == ONE_TEMPLATE


@pytest.mark.parametrize(
    ("content_type", "body", "field"),
    [
        ("text/plain", b"Not Found", "(content-type)"),
        (JSON, b"Not Found", "(body)"),
        (JSON, b"[]", "(body)"),
    ],
)
def test_an_error_that_is_not_twilios_shape_is_refused(
    content_type: str, body: bytes, field: str
) -> None:
    with pytest.raises(ResponseMismatch) as caught:
        validate_response("GET", ONE_MESSAGE, 404, content_type, body)

    assert caught.value.fields == {field}


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("Thu, 24 Aug 2023 05:01:45 +0000", True),
        ("Sat, 01 Jan 2000 00:00:00 +0000", True),
        (None, True),  # nullability is the schema's to decide
        ("Fri, 24 Aug 2023 05:01:45 +0000", False),
        ("Thu, 24 Aug 2023 05:01:45", False),
        ("Thu, 24 Aug 2023 05:01:45 -0000", False),
        ("2023-08-24T05:01:45Z", False),
        ("yesterday", False),
        ("", False),
    ],
)
def test_rfc2822_dates(value: object, valid: bool) -> None:
    assert is_rfc2822_date(value) is valid


@pytest.mark.parametrize(
    ("value", "twilio", "absolute"),
    [
        ("https://www.twilio.com/docs/errors/20404", True, True),
        ("/2010-04-01/Accounts/AC1/Messages.json?Page=1", True, False),
        ("", True, False),
        ("not a uri", False, False),
        ("https://exa mple.com/", False, False),
        ("mailto:someone", False, False),
    ],
)
def test_uris(value: str, twilio: bool, absolute: bool) -> None:
    assert (is_twilio_uri(value), is_absolute_uri(value)) == (twilio, absolute)
