"""Checks the sandbox's answers against Twilio's own description of its API.

A response that succeeds is validated by openapi-core against Twilio's OpenAPI 3.0.1
description of API v2010, committed next to this file. Twilio's errors are not in that
description, so a 4xx or 5xx answer is validated against the one shape Twilio documents for
them instead. Tests call ``validate_response`` on every kind of answer the sandbox gives, so
the sandbox cannot drift from what Twilio's clients expect.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import httpx
import jsonschema  # type: ignore[import-untyped]
from openapi_core import Config, OpenAPI
from openapi_core.templating.media_types.exceptions import MediaTypeFinderError
from openapi_core.templating.paths import APICallPathFinder
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseNotFound
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.response.exceptions import HeaderValidationError
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue

SPEC_PATH = Path(__file__).with_name("twilio_api_v2010.json")

# The shape of every Twilio error body; ``status`` must also equal the HTTP status the body
# came with, which _error_schema adds.
ERROR_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "required": ["code", "message", "more_info", "status"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "more_info": {"type": "string", "format": "uri"},
        "status": {"type": "integer"},
    },
}

# jsonschema names a missing property only in its message.
_MISSING = re.compile(r"^'(?P<name>[^']+)' is a required property$")


class Problem(NamedTuple):
    """One way a response differs from the description: where, and how."""

    field: str
    message: str


class ResponseMismatch(AssertionError):
    """A response that Twilio's OpenAPI description (or Twilio's error shape) does not allow.

    An AssertionError: it is an expectation about the sandbox that was not met, not a fault
    in the test that checked it.
    """

    def __init__(
        self, method: str, path: str, status: int, operation: str | None, problems: list[Problem]
    ) -> None:
        self.method = method.upper()
        self.path = path
        self.status = status
        self.operation = operation
        self.problems = tuple(problems)
        where = f" (described as {operation})" if operation and operation != path else ""
        lines = [f"{self.method} {path}{where}: a {status} answer Twilio would not give:"]
        lines += [f"  {problem.field}: {problem.message}" for problem in self.problems]
        super().__init__("\n".join(lines))

    @property
    def fields(self) -> set[str]:
        return {problem.field for problem in self.problems}


def validate_response(
    method: str,
    url: str,
    status: int,
    content_type: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Raise ResponseMismatch unless this response is one Twilio could have given.

    ``url`` is the sandbox's (``http://127.0.0.1:PORT/2010-04-01/...``); only its path is
    matched against the description. ``headers``, when given, are checked against the headers
    the description documents for the response; others are ignored.
    """
    path = urlsplit(url).path
    if status >= 400:
        problems = _error_problems(status, content_type, body)
    else:
        problems = _described_problems(method, path, status, content_type, body, headers or {})
    if problems:
        raise ResponseMismatch(method, path, status, _operation_path(method, path), problems)


@functools.cache
def _openapi() -> OpenAPI:
    config = Config(
        extra_format_validators={"date-time-rfc-2822": is_rfc2822_date, "uri": is_twilio_uri},
        # Twilio answers with every documented property (null when unset), but the
        # description lists none as required: without this, a dropped key would pass.
        response_properties_default_policy="required",
    )
    # openapi-core's file loaders parse as YAML, which rejects the JSON's escaped surrogate
    # pairs (the emoji in the examples); json reads it as Twilio wrote it. The document itself
    # is checked once here, as openapi-core does by default, since this runs once a process.
    document = json.loads(SPEC_PATH.read_bytes())
    return OpenAPI.from_dict(document, config=config)


def _server_url() -> str:
    return (_openapi().spec / "servers" / 0 / "url").read_str()


def _described_problems(
    method: str,
    path: str,
    status: int,
    content_type: str,
    body: bytes,
    headers: Mapping[str, str],
) -> list[Problem]:
    # The description's operations live under Twilio's host, not the sandbox's.
    request = MockRequest(_server_url(), method, path)
    response = MockResponse(
        body, status_code=status, headers=dict(headers), content_type=content_type.lower()
    )
    errors = _openapi().iter_response_errors(request, response)
    return [problem for error in errors for problem in _problems_of(error)]


def _problems_of(error: Exception) -> Iterator[Problem]:
    cause = error.__cause__
    if isinstance(cause, InvalidSchemaValue):
        yield from _schema_problems(cause.schema_errors)
    elif isinstance(error, PathError):
        yield Problem("(operation)", str(error))
    elif isinstance(error, ResponseNotFound):
        described = ", ".join(error.availableresponses)
        yield Problem("(status)", f"{error}; the description has {described}")
    elif isinstance(error, HeaderValidationError):
        yield Problem(f"(header {error.name})", str(cause or error))
    elif isinstance(cause, MediaTypeFinderError):
        yield Problem("(content-type)", str(cause))
    else:
        yield Problem("(body)", str(cause or error))


def _schema_problems(errors: Iterable[Exception]) -> Iterator[Problem]:
    for error in errors:
        if isinstance(error, jsonschema.ValidationError):
            yield Problem(_field(error), error.message)
        else:
            yield Problem("(body)", str(error))


def _field(error: Any) -> str:
    parts: list[str | int] = list(error.absolute_path)
    missing = _MISSING.match(error.message)
    if missing:
        parts.append(missing["name"])
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "(body)"


def _error_problems(status: int, content_type: str, body: bytes) -> list[Problem]:
    if _mimetype(content_type) != "application/json":
        return [Problem("(content-type)", f"{content_type!r}; Twilio's errors are JSON")]
    try:
        document = json.loads(body)
    except ValueError as error:
        return [Problem("(body)", f"not JSON: {error}")]
    validator = jsonschema.Draft202012Validator(
        _error_schema(status), format_checker=_error_format_checker()
    )
    return [Problem(_field(error), error.message) for error in validator.iter_errors(document)]


def _error_schema(status: int) -> dict[str, Any]:
    properties = dict(ERROR_SCHEMA["properties"])
    properties["status"] = {**properties["status"], "const": status}
    return {**ERROR_SCHEMA, "properties": properties}


@functools.cache
def _error_format_checker() -> Any:
    # jsonschema checks ``uri`` only with an optional package installed; more_info is always
    # an absolute link to Twilio's documentation.
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("uri")(is_absolute_uri)
    return checker


def _operation_path(method: str, path: str) -> str | None:
    try:
        found = APICallPathFinder(_openapi().spec).find(method.lower(), _server_url() + path)
    except PathError:
        return None
    pattern: str = found.path_result.pattern
    return pattern


def _mimetype(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def is_rfc2822_date(value: object) -> bool:
    """Whether ``value`` is a date as Twilio writes them: ``Thu, 24 Aug 2023 05:01:45 +0000``."""
    # A format constrains strings only; null and other types are the schema's business.
    if not isinstance(value, str):
        return True
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    # Written back, it must read the same: that rejects a wrong weekday or a missing zone,
    # which the parser lets through.
    return moment.tzinfo is not None and format_datetime(moment) == value


def is_twilio_uri(value: object) -> bool:
    """Whether ``value`` is a URI as Twilio's ``uri`` fields hold them.

    Most are relative to https://api.twilio.com, and an unset callback URL is an empty string:
    a strict URI check (which jsonschema runs when rfc3987 is installed) would refuse both.
    """
    if not isinstance(value, str) or value == "":
        return True
    if value.startswith("/"):
        return not _has_space(value)
    return is_absolute_uri(value)


def is_absolute_uri(value: object) -> bool:
    """Whether ``value`` is an absolute URI with a host, such as ``https://www.twilio.com/x``."""
    if not isinstance(value, str):
        return True
    if _has_space(value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return bool(parts.scheme and parts.netloc)


def _has_space(value: str) -> bool:
    return any(character.isspace() for character in value)


def validate_http_response(response: httpx.Response) -> None:
    """:func:`validate_response` for an answer httpx received."""
    validate_response(
        response.request.method,
        str(response.url),
        response.status_code,
        response.headers["content-type"],
        response.content,
    )
