"""Twilio's errors as the sandbox answers them: one catalogue, one shape."""

from __future__ import annotations

from dataclasses import dataclass

# code: (HTTP status when answered synchronously, Twilio's message)
CATALOGUE: dict[int, tuple[int, str]] = {
    20001: (400, "Invalid request"),
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "An internal server error has occurred"),
    20503: (503, "Service unavailable"),
    21211: (400, "Invalid 'To' Phone Number"),
    21212: (400, "Invalid 'From' Phone Number"),
    21602: (400, "Message body is required."),
    21603: (400, "The 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21609: (400, "Invalid StatusCallback url"),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
    21655: (400, "The ContentSid is Invalid."),
    21701: (400, "The Messaging Service does not exist"),
    # Late failures, reported in status callbacks (a fault's ``outcome`` uses them).
    30003: (400, "Unreachable destination handset"),
    30005: (400, "Unknown destination handset"),
    30006: (400, "Landline or unreachable carrier"),
    30007: (400, "Message filtered"),
    30008: (400, "Unknown error"),
    63003: (400, "Channel could not find To address"),
    63014: (400, "The message could not be delivered: the user blocked messages from you"),
    63021: (400, "Channel invalid content error"),
    63024: (400, "Invalid message recipient"),
    63007: (400, "Twilio could not find a Channel with the specified From address"),
    63016: (
        400,
        "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template.",
    ),
    63018: (429, "Rate limit exceeded for Channel"),
}


@dataclass(frozen=True)
class TwilioError(Exception):
    """A refusal in Twilio's words: its code, and the HTTP status it is answered with."""

    code: int
    status: int
    message: str

    @classmethod
    def of(cls, code: int, detail: str | None = None, *, status: int | None = None) -> TwilioError:
        default_status, message = CATALOGUE.get(code, (400, "Error"))
        return cls(code, status or default_status, detail or message)

    def body(self) -> dict[str, object]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def message_of(code: int) -> str:
    return CATALOGUE.get(code, (400, "Error"))[1]
