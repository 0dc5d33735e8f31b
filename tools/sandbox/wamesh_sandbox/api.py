"""Twilio's Messages API (2010-04-01) as the sandbox answers it: create, fetch, list.

Only what a WhatsApp sender uses, validated as Twilio validates it, in Twilio's JSON shapes
(the tests check them against Twilio's OpenAPI description)."""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import parse_qsl, urlencode

from wamesh_sandbox.errors import TwilioError
from wamesh_sandbox.record import Message, Record, new_sid
from wamesh_sandbox.settings import Account
from wamesh_sandbox.webhooks import is_http_url

WHATSAPP_ADDRESS = re.compile(r"whatsapp:\+[1-9][0-9]{6,14}")
MAX_BODY_CHARS = 1600
MAX_MEDIA = 10
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


class Accounts:
    """Who may call: account SIDs with their auth tokens, API keys with their secrets."""

    def __init__(self, accounts: list[Account]) -> None:
        self.by_sid = {account.sid: account for account in accounts}
        self._keys = {
            key: (account, secret)
            for account in accounts
            for key, secret in account.api_keys.items()
        }
        self._seen: dict[str, Account] = {}  # Authorization header → account: one per client

    def authenticate(self, authorization: str | None, account_sid: str) -> Account:
        """The account a request's Basic credentials open, which must be the one in its path."""
        account = self._seen.get(authorization or "")
        if account is None:
            account = self._check(authorization)
            if len(self._seen) < 10_000:
                self._seen[authorization or ""] = account
        if account.sid != account_sid:
            raise TwilioError.of(20003)
        return account

    def _check(self, authorization: str | None) -> Account:
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            raise TwilioError.of(20003)
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise TwilioError.of(20003) from None
        account = self.by_sid.get(user)
        if account is not None and account.auth_token == password:
            return account
        keyed = self._keys.get(user)
        if keyed is not None and keyed[1] == password:
            return keyed[0]
        raise TwilioError.of(20003)


@dataclass(frozen=True)
class CreateRequest:
    to: str
    from_: str
    messaging_service_sid: str | None
    body: str
    media_urls: list[str]
    content_sid: str | None
    content_variables: str | None
    status_callback: str | None


def parse_form(raw: bytes) -> dict[str, list[str]]:
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        raise TwilioError.of(20001, "The request body is not a valid form") from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def create_request(form: dict[str, list[str]], account: Account) -> CreateRequest:
    """Twilio's synchronous checks, in its order; a TwilioError for the first that fails."""

    def one(name: str) -> str:
        return form.get(name, [""])[-1]

    to = one("To").strip()
    if not to:
        raise TwilioError.of(21604)
    if not WHATSAPP_ADDRESS.fullmatch(to):
        raise TwilioError.of(21211, f"Invalid 'To' Phone Number: {to}")
    from_, service = one("From").strip(), one("MessagingServiceSid").strip() or None
    if not from_ and service is None:
        raise TwilioError.of(21603)
    if service is not None and not from_:
        senders = account.messaging_services.get(service)
        if not senders:
            raise TwilioError.of(21701)
        from_ = senders[0]
    if not WHATSAPP_ADDRESS.fullmatch(from_):
        raise TwilioError.of(21212, f"Invalid 'From' Phone Number: {from_}")
    if from_ not in account.senders:
        raise TwilioError.of(63007)
    body, media = one("Body"), [url for url in form.get("MediaUrl", []) if url]
    content_sid = one("ContentSid").strip() or None
    if not body and not media and content_sid is None:
        raise TwilioError.of(21602)
    if len(body) > MAX_BODY_CHARS:
        raise TwilioError.of(21617)
    if len(media) > MAX_MEDIA:
        raise TwilioError.of(20001, f"At most {MAX_MEDIA} MediaUrl are allowed")
    if content_sid is not None and content_sid not in account.content_sids:
        raise TwilioError.of(21655)
    callback = one("StatusCallback").strip() or None
    if callback is not None and not is_http_url(callback):
        raise TwilioError.of(21609)
    return CreateRequest(
        to=to,
        from_=from_,
        messaging_service_sid=service,
        body=body,
        media_urls=media,
        content_sid=content_sid,
        content_variables=one("ContentVariables") or None,
        status_callback=callback,
    )


def new_message(account: Account, request: CreateRequest) -> Message:
    now = time.time()
    status = "accepted" if request.messaging_service_sid else "queued"
    return Message(
        sid=new_sid("MM" if request.media_urls else "SM"),
        account_sid=account.sid,
        to=request.to,
        from_=request.from_,
        body=request.body,
        media_urls=request.media_urls,
        content_sid=request.content_sid,
        content_variables=request.content_variables,
        status_callback=request.status_callback,
        messaging_service_sid=request.messaging_service_sid,
        created_at=now,
        updated_at=now,
        status=status,
        statuses=[status],
    )


def fetch(record: Record, account: Account, sid: str) -> Message:
    message = record.messages.get(sid)
    if message is None or message.account_sid != account.sid:
        raise TwilioError.of(
            20404,
            f"The requested resource /2010-04-01/Accounts/{account.sid}/Messages/{sid}.json "
            "was not found",
        )
    return message


# -- the list, with Twilio's filters and paging --------------------------------------------


@dataclass(frozen=True)
class Bound:
    """A DateSent filter value: a whole day (``YYYY-MM-DD``) or an instant."""

    day: date | None
    instant: float | None

    @classmethod
    def parse(cls, name: str, raw: str) -> Bound:
        text = raw.strip()
        try:
            if len(text) == 10:
                return cls(date.fromisoformat(text), None)
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise TwilioError.of(20001, f"{name} must be YYYY-MM-DD or an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return cls(None, moment.timestamp())

    def compare(self, sent_at: float) -> int:
        """-1, 0, 1 as ``sent_at`` is before, in or after this bound."""
        if self.day is None:  # to the second, as Twilio keeps date_sent
            sent, instant = int(sent_at), int(self.instant or 0)
            return (sent > instant) - (sent < instant)
        day = datetime.fromtimestamp(sent_at, UTC).date()
        return (day > self.day) - (day < self.day)


@dataclass(frozen=True)
class ListQuery:
    to: str | None
    from_: str | None
    on: Bound | None
    before: Bound | None  # DateSent<: on or before
    after: Bound | None  # DateSent>: on or after
    page_size: int
    page: int
    after_sid: str | None

    @classmethod
    def parse(cls, params: dict[str, str]) -> ListQuery:
        def bound(name: str) -> Bound | None:
            return Bound.parse(name, params[name]) if params.get(name) else None

        page_size = _integer(params, "PageSize", DEFAULT_PAGE_SIZE)
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise TwilioError.of(20001, f"PageSize must be from 1 to {MAX_PAGE_SIZE}")
        token = params.get("PageToken") or None
        if token is not None and not (token.startswith("PA") and len(token) == 36):
            raise TwilioError.of(20001, "PageToken is not one this API issued")
        return cls(
            to=params.get("To") or None,
            from_=params.get("From") or None,
            on=bound("DateSent"),
            before=bound("DateSent<"),
            after=bound("DateSent>"),
            page_size=page_size,
            page=_integer(params, "Page", 0),
            after_sid=token[2:] if token else None,
        )

    def matches(self, message: Message) -> bool:
        if self.to is not None and message.to != self.to:
            return False
        if self.from_ is not None and message.from_ != self.from_:
            return False
        if self.on is None and self.before is None and self.after is None:
            return True
        if message.sent_at is None:
            return False
        sent = message.sent_at
        return (
            (self.on is None or self.on.compare(sent) == 0)
            and (self.before is None or self.before.compare(sent) <= 0)
            and (self.after is None or self.after.compare(sent) >= 0)
        )

    def filters(self, params: dict[str, str]) -> list[tuple[str, str]]:
        names = ("To", "From", "DateSent", "DateSent<", "DateSent>")
        return [(name, params[name]) for name in names if params.get(name)]


def _integer(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise TwilioError.of(20001, f"{name} must be a non-negative integer")
    return int(raw)


def list_page(record: Record, account: Account, params: dict[str, str]) -> dict[str, object]:
    """One page, newest first, with the URIs the client libraries follow."""
    query = ListQuery.parse(params)
    matching: Iterator[Message] = (m for m in record.newest_first(account.sid) if query.matches(m))
    if query.after_sid is not None:
        matching = _after(matching, query.after_sid)
    else:
        for _ in range(query.page * query.page_size):
            if next(matching, None) is None:
                break
    messages = []
    for message in matching:
        messages.append(message)
        if len(messages) == query.page_size + 1:
            break
    more = len(messages) > query.page_size
    messages = messages[: query.page_size]
    base = f"/2010-04-01/Accounts/{account.sid}/Messages.json"
    filters = query.filters(params)

    def uri(page: int, token: str | None = None) -> str:
        pairs = [*filters, ("PageSize", str(query.page_size)), ("Page", str(page))]
        if token is not None:
            pairs.append(("PageToken", token))
        return f"{base}?{urlencode(pairs)}"

    start = query.page * query.page_size
    return {
        "first_page_uri": uri(0),
        "end": start + max(len(messages) - 1, 0),
        "previous_page_uri": uri(query.page - 1) if query.page > 0 else None,
        "messages": [message.resource() for message in messages],
        "uri": uri(query.page, params.get("PageToken") or None),
        "page_size": query.page_size,
        "start": start,
        "next_page_uri": uri(query.page + 1, "PA" + messages[-1].sid) if more else None,
        "page": query.page,
    }


def _after(messages: Iterator[Message], sid: str) -> Iterator[Message]:
    for message in messages:
        if message.sid == sid:
            break
    yield from messages
