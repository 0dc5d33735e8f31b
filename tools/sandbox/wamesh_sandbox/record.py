"""What the sandbox saw and did, in order: messages, their statuses, the webhooks it sent,
who wrote in (the 24-hour windows) and who opted out. In memory, optionally kept in an
append-only JSON-lines file and replayed at start, so ``make up`` keeps it across restarts."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

# Twilio's keywords: these opt a recipient out of (or back into) a sender's messages.
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
# Statuses only move forward (Twilio's order); the final ones end it.
ORDER = {"accepted": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4, "read": 5}
FINAL = frozenset({"failed", "undelivered", "canceled"})


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime) -> str:
    return format_datetime(moment, usegmt=False).replace("-0000", "+0000")


@dataclass
class Message:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    media_urls: list[str]
    content_sid: str | None
    content_variables: str | None
    status_callback: str | None
    messaging_service_sid: str | None
    created_at: float
    status: str = "queued"
    error_code: int | None = None
    error_message: str | None = None
    updated_at: float = 0.0
    sent_at: float | None = None
    statuses: list[str] = field(default_factory=list)

    def resource(self) -> dict[str, Any]:
        """The message as Twilio's API shows it."""
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{self.sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": _date(self.created_at),
            "date_sent": _date(self.sent_at) if self.sent_at is not None else None,
            "date_updated": _date(self.updated_at or self.created_at),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": str(len(self.media_urls)),
            "num_segments": str(max(1, -(-len(self.body) // 1600))),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {
                "media": f"{uri}/Media.json",
                "feedback": f"{uri}/Feedback.json",
            },
            "to": self.to,
            "uri": f"{uri}.json",
        }

    def advance(self, status: str, now: float, error_code: int | None = None) -> bool:
        """Move to ``status`` if that is forward; say whether it moved."""
        if self.status in FINAL:
            return False
        if status not in FINAL and ORDER.get(status, -1) <= ORDER.get(self.status, -1):
            return False
        self.status, self.updated_at = status, now
        if status == "sent" and self.sent_at is None:
            self.sent_at = now
        if error_code is not None:
            self.error_code = error_code
        self.statuses.append(status)
        return True


def _date(moment: float) -> str:
    return rfc2822(datetime.fromtimestamp(moment, UTC))


@dataclass
class Webhook:
    """A webhook the sandbox sent: a status callback or a customer's inbound message."""

    kind: str  # "status" or "inbound"
    url: str
    params: dict[str, str]
    at: float
    attempts: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "pending"  # "delivered", "failed"


class RecordError(RuntimeError):
    """A journal line the sandbox cannot replay: names the file and the line."""

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}; move the file away to start empty")


class Record:
    """Everything the sandbox knows, with an optional journal to survive restarts."""

    def __init__(self, path: Path | None = None) -> None:
        self.messages: dict[str, Message] = {}
        self.by_account: dict[str, list[str]] = {}
        self.webhooks: list[Webhook] = []
        self.last_inbound: dict[tuple[str, str], float] = {}  # (sender, customer): when
        self.opted_out: set[tuple[str, str]] = set()
        self._journal: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self._replay(path)
            self._journal = path.open("a", encoding="utf-8")

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()

    def add_message(self, message: Message) -> None:
        self.messages[message.sid] = message
        self.by_account.setdefault(message.account_sid, []).append(message.sid)
        self._write({"kind": "message", **_message_fields(message)})

    def advance(self, message: Message, status: str, now: float, code: int | None) -> bool:
        moved = message.advance(status, now, code)
        if moved:
            self._write(
                {
                    "kind": "status",
                    "sid": message.sid,
                    "status": status,
                    "at": now,
                    "error_code": code,
                }
            )
        return moved

    def add_webhook(self, webhook: Webhook) -> None:
        self.webhooks.append(webhook)

    def finish_webhook(self, webhook: Webhook) -> None:
        # Nested: the webhook's own ``kind`` ("status", "inbound") must not replace the
        # event's.
        self._write({"kind": "webhook", "webhook": asdict(webhook)})

    def saw_inbound(self, sender: str, customer: str, body: str, now: float) -> None:
        self.last_inbound[(sender, customer)] = now
        keyword = body.strip().upper()
        if keyword in OPT_OUT:
            self.opted_out.add((sender, customer))
        elif keyword in OPT_IN:
            self.opted_out.discard((sender, customer))
        self._write(
            {
                "kind": "inbound",
                "sender": sender,
                "customer": customer,
                "keyword": keyword if keyword in OPT_OUT | OPT_IN else "",
                "at": now,
            }
        )

    def clear(self) -> None:
        self.messages.clear()
        self.by_account.clear()
        self.webhooks.clear()
        self.last_inbound.clear()
        self.opted_out.clear()
        self._write({"kind": "clear"})

    def newest_first(self, account_sid: str) -> Iterator[Message]:
        for sid in reversed(self.by_account.get(account_sid, [])):
            yield self.messages[sid]

    def _write(self, event: dict[str, Any]) -> None:
        if self._journal is not None:
            self._journal.write(json.dumps(event, separators=(",", ":")) + "\n")
            self._journal.flush()

    def _replay(self, path: Path) -> None:
        journal, self._journal = self._journal, None  # replaying writes nothing
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                self._apply(json.loads(line))
            except json.JSONDecodeError:
                if number == len(lines):  # a write cut short by a kill: the rest is whole
                    log.warning("%s:%d: a cut-short last line, left out", path, number)
                    continue
                raise RecordError(path, number, "is not JSON") from None
            except (KeyError, TypeError) as error:
                raise RecordError(
                    path, number, f"is not an event this sandbox wrote ({error})"
                ) from None
        self._journal = journal

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.pop("kind")
        if kind == "message":
            self.add_message(Message(**event))
        elif kind == "status" and event["sid"] in self.messages:
            self.messages[event["sid"]].advance(event["status"], event["at"], event["error_code"])
        elif kind == "webhook":
            self.webhooks.append(Webhook(**event["webhook"]))
        elif kind == "inbound":
            self.last_inbound[(event["sender"], event["customer"])] = event["at"]
            if event["keyword"] in OPT_OUT:
                self.opted_out.add((event["sender"], event["customer"]))
            elif event["keyword"] in OPT_IN:
                self.opted_out.discard((event["sender"], event["customer"]))
        elif kind == "clear":
            self.clear()


def _message_fields(message: Message) -> dict[str, Any]:
    fields = asdict(message)
    fields["statuses"] = fields["statuses"][:1]  # the later ones are replayed as events
    return fields
