"""What the dispatcher does with each way a send to Twilio can fail: one table, read only here.

Why each class is what it is:

- RETRY: Twilio did not act on the request, or said to come back later. 429 / 20429 are
  refused before any processing; 63018 is the sender's rate or tier limit, so the sender
  slows down as a whole; a connection that never opened carried nothing. Outside a create,
  a timeout, a reset or a 5xx is safe to repeat too, since reads change nothing.
- AMBIGUOUS: a create that timed out, was reset, or got a 5xx may have made the message:
  the Messages API takes no idempotency key, so sending again blindly can send twice. The
  message is looked up at Twilio first, and only sent again if it is not there.
- FINAL: Twilio will refuse the same message every time (invalid recipient 21211 / 21614 /
  63003, blocked by the user 63014, invalid content 63021, any 4xx this table does not
  know): retrying only burns the sender's quality rating. The code and message are kept.
- OPT_OUT (21610): final too, and the recipient is marked opted out in the conversation
  store, which then fails their later jobs' messages before they are tried (the runner ends
  such a job at once with the same code) until they write START.
- WINDOW_CLOSED (63016): free-form text outside the 24-hour window; the same recipient takes
  a template, so the job's fallback template is sent if it has one, else it fails.
- PAUSE_SENDER (20003, 63007, any 401): the credentials or the sender are wrong, so every
  job of that sender would fail alike. Sending stops for the sender until its credentials
  change, and the jobs keep their attempts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    RETRY = "retry"
    AMBIGUOUS = "ambiguous"
    FINAL = "final"
    OPT_OUT = "opt_out"
    WINDOW_CLOSED = "window_closed"
    PAUSE_SENDER = "pause_sender"


class Cause(StrEnum):
    """A failure that carries no Twilio code the table knows, by what went wrong."""

    CONNECT = "connect"  # the connection never opened: nothing reached Twilio
    TIMEOUT = "timeout"
    RESET = "reset"  # dropped after the request went out, with no answer
    TOO_MANY = "http_429"
    SERVER = "http_5xx"
    UNAUTHORISED = "http_401"
    CLIENT = "http_4xx"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Rule:
    action: Action
    reason: str
    # A create that failed this way may still have made the message.
    ambiguous_on_create: bool = False


# Twilio's "attempt to send to unsubscribed recipient".
OPTED_OUT = 21610

TABLE: Mapping[int | Cause, Rule] = {
    20429: Rule(Action.RETRY, "too many requests"),
    63018: Rule(Action.RETRY, "sender rate limit exceeded"),
    21211: Rule(Action.FINAL, "invalid recipient"),
    21614: Rule(Action.FINAL, "invalid recipient"),
    63003: Rule(Action.FINAL, "invalid recipient"),
    63014: Rule(Action.FINAL, "recipient blocked the sender"),
    63021: Rule(Action.FINAL, "invalid content"),
    OPTED_OUT: Rule(Action.OPT_OUT, "recipient opted out"),
    63016: Rule(Action.WINDOW_CLOSED, "outside the 24-hour window"),
    20003: Rule(Action.PAUSE_SENDER, "credentials refused"),
    63007: Rule(Action.PAUSE_SENDER, "sender not found for these credentials"),
    Cause.CONNECT: Rule(Action.RETRY, "could not connect"),
    Cause.TIMEOUT: Rule(Action.RETRY, "timed out", ambiguous_on_create=True),
    Cause.RESET: Rule(Action.RETRY, "connection dropped", ambiguous_on_create=True),
    Cause.TOO_MANY: Rule(Action.RETRY, "too many requests"),
    Cause.SERVER: Rule(Action.RETRY, "Twilio server error", ambiguous_on_create=True),
    Cause.UNAUTHORISED: Rule(Action.PAUSE_SENDER, "credentials refused"),
    Cause.CLIENT: Rule(Action.FINAL, "refused by Twilio"),
    # Neither an answer nor a transport error the adapter knows: a bug or a proxy's page.
    # Final, so it is seen in the dead letters rather than retried into the same wall.
    Cause.UNKNOWN: Rule(Action.FINAL, "unexpected failure"),
}


@dataclass(frozen=True)
class Failure:
    """One failed call to Twilio: its answer (``status``, ``code``) or, with no answer, how
    the transport failed (``transport``)."""

    message: str
    status: int | None = None
    code: int | None = None
    transport: Cause | None = None


@dataclass(frozen=True)
class Outcome:
    action: Action
    reason: str
    code: int | None
    message: str


def classify(failure: Failure, *, creating: bool) -> Outcome:
    """What to do after ``failure``; ``creating`` when the call was a message create."""
    rule = TABLE[_key(failure)]
    action = Action.AMBIGUOUS if creating and rule.ambiguous_on_create else rule.action
    return Outcome(action, rule.reason, failure.code, failure.message)


def _key(failure: Failure) -> int | Cause:
    if failure.transport is not None:
        return failure.transport
    if failure.code is not None and failure.code in TABLE:
        return failure.code
    return _cause_of_status(failure.status)


def _cause_of_status(status: int | None) -> Cause:
    if status is None:
        return Cause.UNKNOWN
    if status == 429:
        return Cause.TOO_MANY
    if status == 401:
        return Cause.UNAUTHORISED
    if 500 <= status <= 599:
        return Cause.SERVER
    if 400 <= status <= 499:
        return Cause.CLIENT
    return Cause.UNKNOWN
