"""The Messages API through the ``twilio`` package's asyncio client, with every failure
turned into an ``Outcome`` from the one table (``outcomes``) instead of an exception.

Two things of that client shape this adapter. Its ``AsyncTwilioHttpClient`` keeps a
``timeout`` it never uses and hands aiohttp ``timeout=None``, which turns aiohttp's own
default off: a Twilio that stops answering would hold a send for ever, so each call runs
under ``asyncio.timeout`` here. And its session is made when the client is, so the adapter
makes it inside the running loop (``__aenter__``) and closes it on the way out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import aiohttp
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from wamesh_dispatcher.outcomes import Cause, Failure, Outcome, classify

# What a call to Twilio can meet; anything else is a bug here and is left to surface.
_FAILURES = (
    TwilioRestException,
    TwilioServiceException,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class Content:
    """What one message carries: text and/or media, or an approved template."""

    body: str = ""
    media_urls: tuple[str, ...] = ()
    content_sid: str | None = None
    content_variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sent:
    sid: str


@dataclass(frozen=True)
class Found:
    """The messages a lookup matched, newest first; none when the send never arrived."""

    sids: tuple[str, ...]


class TwilioApi:
    """One account's Messages API. ``base_url`` points it elsewhere than Twilio (the
    sandbox), through the client's own ``api.base_url``."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 15.0,
        lookup_limit: int = 50,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be above 0, not {timeout_s}")
        self._account_sid, self._auth_token = account_sid, auth_token
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._lookup_limit = lookup_limit
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Any = None

    async def __aenter__(self) -> Self:
        # No max_retries: the library would repeat a create on its own, and a repeated
        # create can send twice.
        self._http = AsyncTwilioHttpClient()
        # An empty environment: TWILIO_EDGE / TWILIO_REGION in the process's would rewrite the
        # host, and a tenant's credentials must never fall back to the process's.
        self._client = Client(
            self._account_sid, self._auth_token, http_client=self._http, environment={}
        )
        if self._base_url is not None:
            self._client.api.base_url = self._base_url
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def closed(self) -> bool:
        session = None if self._http is None else self._http.session
        return session is None or bool(session.closed)

    async def create(
        self, *, to: str, from_: str, content: Content, status_callback: str | None = None
    ) -> Sent | Outcome:
        """Send one message: its MessageSid, or what to do about the failure."""
        fields = _create_fields(to, from_, content, status_callback)
        try:
            async with asyncio.timeout(self._timeout_s):
                created = await self._messages().create_async(**fields)
        except _FAILURES as error:
            return classify(_failure_of(error), creating=True)
        return Sent(str(created.sid))

    async def find_sent(
        self, *, to: str, from_: str, since: datetime, content: Content
    ) -> Found | Outcome:
        """The messages from ``from_`` to ``to`` created since ``since`` that carry
        ``content``: whether an ambiguous create made its message after all.

        Filtered on DateCreated here rather than on DateSent at Twilio: a message Twilio
        still holds queued has no DateSent yet, and a DateSent filter would miss the very
        message whose create was cut off. The newest ``lookup_limit`` are enough because the
        dispatcher sends to one recipient one message at a time."""
        try:
            async with asyncio.timeout(self._timeout_s):
                listed = await self._messages().list_async(
                    to=to, from_=from_, limit=self._lookup_limit
                )
        except _FAILURES as error:
            return classify(_failure_of(error), creating=False)
        cutoff = since.replace(microsecond=0)  # Twilio keeps DateCreated to the second
        return Found(
            tuple(
                str(message.sid)
                for message in listed
                if message.date_created is not None
                and message.date_created >= cutoff
                and _carries(message, content)
            )
        )

    def _messages(self) -> Any:
        if self._client is None:
            raise RuntimeError("TwilioApi is used outside its 'async with'")
        return self._client.messages


def _create_fields(
    to: str, from_: str, content: Content, status_callback: str | None
) -> dict[str, Any]:
    fields: dict[str, Any] = {"to": to, "from_": from_}
    if content.body:
        fields["body"] = content.body
    if content.media_urls:
        fields["media_url"] = list(content.media_urls)
    if content.content_sid is not None:
        fields["content_sid"] = content.content_sid
        if content.content_variables:
            fields["content_variables"] = json.dumps(dict(content.content_variables))
    if status_callback is not None:
        fields["status_callback"] = status_callback
    return fields


def _carries(message: Any, content: Content) -> bool:
    # The API shows a template message's rendered text, never its ContentSid: any message
    # in the window is taken as the template's, which per-recipient ordering makes ours.
    if content.content_sid is not None:
        return True
    return (message.body or "") == content.body and int(message.num_media or 0) == len(
        content.media_urls
    )


def _failure_of(error: Exception) -> Failure:
    """What the library raised, as the table reads it."""
    if isinstance(error, TwilioRestException):
        return Failure(str(error.msg), status=int(error.status), code=_code(error.code))
    if isinstance(error, TwilioServiceException):
        detail = error.detail or error.title
        return Failure(str(detail), status=int(error.status), code=_code(error.code))
    # A connect timeout is a connector error too: before these, since it carried nothing.
    if isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return Failure(str(error), transport=Cause.CONNECT)
    if isinstance(error, TimeoutError):
        return Failure("no answer in time", transport=Cause.TIMEOUT)
    if isinstance(error, aiohttp.ClientError | OSError):
        return Failure(str(error) or type(error).__name__, transport=Cause.RESET)
    return Failure(f"{type(error).__name__}: {error}")


def _code(raw: object) -> int | None:
    try:
        return int(str(raw))
    except ValueError:
        return None
