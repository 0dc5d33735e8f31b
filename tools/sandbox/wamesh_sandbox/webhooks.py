"""The webhooks the sandbox sends as Twilio does: form-encoded, signed with the account's
auth token, retried by Twilio's rules, each attempt recorded."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urldefrag

import httpx
from twilio.request_validator import RequestValidator

from wamesh_sandbox.record import Record, Webhook

log = logging.getLogger(__name__)


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL the sandbox can post to."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """``X-Twilio-Signature``: the twilio library's own computation, so it cannot drift."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


@dataclass(frozen=True)
class RetryRules:
    """Twilio's connection overrides, read from the URL's fragment (``#rc=3&rp=all``).

    Without them Twilio retries once, and only when it could not connect; ``rp`` widens that
    to ``4xx``, ``5xx``, ``rt`` (read timeout), ``ct`` (connect failure) or ``all``.
    """

    retries: int = 1
    policy: frozenset[str] = frozenset({"ct"})
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0

    @classmethod
    def of(cls, fragment: str, *, timeout_s: float | None = None) -> RetryRules:
        """The rules a fragment sets; a value that is not a number keeps its default.

        ``timeout_s`` replaces Twilio's default connect and read timeouts; the fragment's
        ``ct`` and ``rt`` still win over it."""
        overrides = dict(parse_qsl(fragment))

        def number(name: str, default: float) -> float:
            raw = overrides.get(name, "")
            return int(raw) if raw.isdigit() else default

        policy = frozenset(overrides.get("rp", "ct").split(","))
        connect_ms = 1000 * (cls.connect_timeout_s if timeout_s is None else timeout_s)
        read_ms = 1000 * (cls.read_timeout_s if timeout_s is None else timeout_s)
        return cls(
            retries=min(5, int(number("rc", 1))),
            policy=frozenset({"4xx", "5xx", "rt", "ct"}) if "all" in policy else policy,
            connect_timeout_s=number("ct", connect_ms) / 1000,
            read_timeout_s=number("rt", read_ms) / 1000,
        )

    def retry_after(self, status: int | None, error: str | None) -> bool:
        if error is not None:
            return error in self.policy
        if status is None:
            return False
        return (400 <= status < 500 and "4xx" in self.policy) or (
            status >= 500 and "5xx" in self.policy
        )


class WebhookSender:
    """Posts webhooks without ever blocking the API: each runs on its own task."""

    def __init__(self, record: Record, *, timeout_s: float) -> None:
        self._record = record
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._tasks: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def post(
        self,
        kind: str,
        url_with_rules: str,
        params: dict[str, str],
        auth_token: str,
        *,
        attempts: int | None = None,
    ) -> Webhook:
        """Post until answered or the rules say stop; the webhook with every attempt.

        ``attempts`` replaces the URL's rules with "retry any failure", each attempt within
        the sender's own timeout (status callbacks: Twilio retries those itself, and a test
        wants a dead or hung target to end as failed in a time it chooses)."""
        url, fragment = urldefrag(url_with_rules)
        rules = RetryRules.of(fragment, timeout_s=self._timeout_s if attempts is not None else None)
        tries = attempts if attempts is not None else 1 + rules.retries
        webhook = Webhook(kind=kind, url=url, params=params, at=time.time())
        self._record.add_webhook(webhook)
        headers = {
            "X-Twilio-Signature": signature(auth_token, url, params),
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "User-Agent": "TwilioProxy/1.1",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        timeout = httpx.Timeout(rules.read_timeout_s, connect=rules.connect_timeout_s)
        for attempt in range(tries):
            status, body, error = await self._attempt(url, params, headers, timeout)
            webhook.attempts.append(
                {"at": time.time(), "status": status, "body": body, "error": error}
            )
            if error is None and status is not None and status < 400:
                webhook.outcome = "delivered"
                break
            again = attempts is not None or rules.retry_after(status, error)
            if not again or attempt == tries - 1:
                webhook.outcome = "failed"
                break
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
        self._record.finish_webhook(webhook)
        return webhook

    async def _attempt(
        self, url: str, params: dict[str, str], headers: dict[str, str], limits: httpx.Timeout
    ) -> tuple[int | None, str | None, str | None]:
        try:
            response = await self._client.post(url, data=params, headers=headers, timeout=limits)
        except httpx.ConnectError:
            return None, None, "ct"
        except httpx.TimeoutException:
            return None, None, "rt"
        except httpx.HTTPError as error:  # reset mid-answer, protocol errors
            log.info("webhook to %s failed: %s", url, type(error).__name__)
            return None, None, "rt"
        return response.status_code, response.text[:2000], None
