"""Domain errors shared by every service.

Services raise these; one gRPC interceptor (``wamesh_kit.rpc.errors``) maps them to
status codes, so no servicer sets a status by hand. ``field`` names the offending input
field for INVALID_ARGUMENT, so a caller can tell exactly what to fix.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a caller may see. ``message`` is safe to show to the caller."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidArgument(DomainError):
    """The request itself is wrong; retrying it unchanged cannot succeed."""


class NotFound(DomainError):
    """The named entity does not exist (or the caller may not know it exists)."""


class AlreadyExists(DomainError):
    """A unique key (number, idempotency key, id) is taken by another entity."""


class FailedPrecondition(DomainError):
    """The entity is not in a state that allows the call (stale version, wrong status)."""


class PermissionDenied(DomainError):
    """The caller is known but may not touch this tenant or call this method."""


class Unauthenticated(DomainError):
    """The caller presented no credentials, or credentials we cannot verify."""


class ResourceExhausted(DomainError):
    """A rate limit or quota is exceeded; retry later."""


class Unavailable(DomainError):
    """A dependency (Postgres, Redis, another service) cannot be reached right now."""
