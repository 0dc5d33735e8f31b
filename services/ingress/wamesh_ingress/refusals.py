"""Every way the ingress refuses a request, and, in :func:`answer`, the one map from each to
its HTTP answer.

A refusal is raised where it is found, before anything of the request was written, and
answered here. The answer's body names the problem, never a secret or a message's content.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse, Response

from wamesh_ingress.routing import NoCredentials, UnknownNumber
from wamesh_ingress.webhooks import WebhookError


class Refusal(Exception):
    """A request the ingress answers with an error."""


class OverBudget(Refusal):
    """The source has spent its request budget (see ``admission.SourceBudget``)."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(wait_s)
        self.wait_s = wait_s  # until it may ask again


class NotAForm(Refusal):
    """The body is not a form, or too large to be one of Twilio's; the message says which."""


class BodyTooSlow(Refusal):
    """The body did not arrive in time; the message says how long it had."""


class TenantUnavailable(Refusal):
    """The tenant registry failed or did not answer in the webhook's time."""


class TenantSuspended(Refusal):
    """The sender number's tenant is suspended."""


class BadSignature(Refusal):
    """``X-Twilio-Signature`` is missing or does not match."""


class StoreRefused(Refusal):
    """The store refused the request (its fault, not the store's); the message says why."""


class SpillUnavailable(Refusal):
    """The store did not take the webhook, and the spill could not keep it either."""


# What an endpoint catches and hands to :func:`answer`: the ingress's own refusals and the
# refusals of the modules it calls.
REFUSALS = (Refusal, WebhookError, UnknownNumber, NoCredentials)


def answer(refusal: Exception) -> Response:
    """The HTTP answer to ``refusal`` (one of :data:`REFUSALS`)."""
    match refusal:
        case OverBudget():
            retry_after = str(max(1, round(refusal.wait_s)))
            return _text(429, "too many requests", {"Retry-After": retry_after})
        case NotAForm() | WebhookError() | StoreRefused():
            return _text(400, str(refusal))
        case BodyTooSlow():
            # A client that slow would hold the connection for the next request too.
            return _text(408, str(refusal), {"Connection": "close"})
        case UnknownNumber():
            return _text(404, "no tenant has this number")
        case NoCredentials():
            return _text(403, "the tenant has no Twilio credentials to check with")
        case TenantSuspended():
            return _text(403, "tenant suspended")
        case BadSignature():
            return _text(403, "signature does not match")
        case TenantUnavailable():
            return _text(503, "tenant registry unavailable")
        case SpillUnavailable():
            return _text(503, "store and spill both unavailable")
    raise TypeError(f"no answer for {type(refusal).__name__}") from refusal


def _text(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(reason, status_code=status, headers=headers)
