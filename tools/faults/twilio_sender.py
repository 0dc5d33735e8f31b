"""A sender that behaves like Twilio towards a webhook URL ending in ``#rc=3&rp=all``.

Each webhook goes on a connection of its own, signed with the tenant's auth token as Twilio
signs (twilio's RequestValidator), and is given Twilio's 15 s to be answered. A 5xx, a
timeout or a failed connection is sent again, up to three more times; a 200 or a 4xx ends
it. Every attempt is kept, so that a test can judge each MessageSid's fate on its own.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

TWILIO_DEADLINE_S = 15.0
TWILIO_CONNECT_S = 5.0


@dataclass(frozen=True)
class Attempt:
    started: float  # time.monotonic() when the request left
    seconds: float  # until the answer, or until Twilio gave up
    status: int | None  # None: no answer in time, or no connection


@dataclass
class Delivery:
    message_sid: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def acknowledged(self) -> bool:
        """Twilio saw a 200 and will never send this webhook again."""
        return any(attempt.status == 200 for attempt in self.attempts)


@dataclass(frozen=True)
class Webhook:
    message_sid: str
    body: bytes
    signature: str


def inbound_form(
    message_sid: str, customer: str, sender_number: str, account_sid: str, body: str
) -> dict[str, str]:
    """The fields of Twilio's "a message comes in" webhook for a WhatsApp text message."""
    return {
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "ProfileName": "Ana",
        "MessageType": "text",
        "SmsSid": message_sid,
        "WaId": customer.removeprefix("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": f"whatsapp:{sender_number}",
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": message_sid,
        "AccountSid": account_sid,
        "From": f"whatsapp:{customer}",
        "ApiVersion": "2010-04-01",
    }


class TwilioSender:
    def __init__(
        self,
        port: int,
        *,
        account_sid: str,
        auth_token: str,
        sender_number: str,
        retries: int = 3,
        retry_after_s: float = 1.0,
        host: str = "127.0.0.1",
    ) -> None:
        self._host, self._port = host, port
        self._url = f"http://{host}:{port}/twilio/whatsapp"
        self._validator = RequestValidator(auth_token)
        self._account_sid = account_sid
        self._sender_number = sender_number
        self._retries = retries
        self._retry_after_s = retry_after_s

    def webhook(self, customer: str, body: str) -> Webhook:
        sid = "SM" + secrets.token_hex(16)
        params = inbound_form(sid, customer, self._sender_number, self._account_sid, body)
        signature = self._validator.compute_signature(self._url, params)
        return Webhook(sid, urlencode(params).encode(), signature)

    async def deliver(self, webhook: Webhook) -> Delivery:
        """Send ``webhook`` until Twilio would stop: a 200, a 4xx, or the retries spent."""
        delivery = Delivery(webhook.message_sid)
        for attempt in range(1 + self._retries):
            if attempt:
                await asyncio.sleep(self._retry_after_s)
            result = await self._attempt(webhook)
            delivery.attempts.append(result)
            if result.status is not None and result.status < 500:
                break
        return delivery

    async def offer(self, webhooks: Iterable[Webhook], per_second: float) -> list[Delivery]:
        """Deliver ``webhooks`` paced at ``per_second``, whatever the answers do."""
        tasks = []
        start = time.monotonic()
        for index, webhook in enumerate(webhooks):
            delay = start + index / per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.deliver(webhook)))
        return list(await asyncio.gather(*tasks))

    async def _attempt(self, webhook: Webhook) -> Attempt:
        started = time.monotonic()
        try:
            async with asyncio.timeout(TWILIO_DEADLINE_S):
                status = await self._exchange(webhook, started)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            status = None
        return Attempt(started, time.monotonic() - started, status)

    async def _exchange(self, webhook: Webhook, started: float) -> int:
        async with asyncio.timeout(TWILIO_CONNECT_S):
            reader, writer = await asyncio.open_connection(self._host, self._port)
        try:
            head = (
                f"POST /twilio/whatsapp HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(webhook.body)}\r\n"
                f"X-Twilio-Signature: {webhook.signature}\r\n"
                f"I-Twilio-Idempotency-Token: {secrets.token_hex(16)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + webhook.body)
            status_line = await reader.readline()
            await reader.read()  # the rest, until the server closes
            return int(status_line.split()[1])
        finally:
            writer.close()
