"""Who is calling, and may they call this method and touch this tenant.

Every call carries ``authorization: Bearer <token>``: the admin token, the internal
(service-to-service) token, or an HS256 JWT with a ``tenant`` claim and an ``exp``. Each
servicer declares who may call each of its methods, with :func:`requires` or a mapping;
a method with no declared policy is refused (fail closed). Health and reflection are public.

:class:`AuthInterceptor` refuses missing, unknown or expired credentials with UNAUTHENTICATED
and a known caller on a method not meant for it with PERMISSION_DENIED. Inside a servicer,
:func:`current_principal` says who calls and :func:`require_tenant_access` keeps a tenant
token to its own tenant's data.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias, TypeVar

import grpc
import grpc.aio
import jwt

from wamesh_kit.errors import DomainError, PermissionDenied, Unauthenticated
from wamesh_kit.rpc._interceptors import (
    CallDetails,
    ClientInterceptor,
    Context,
    Continuation,
    Handler,
    ServerInterceptor,
    client_interceptors,
    replace_details,
    split_method,
    wrap_handler,
)
from wamesh_kit.rpc.errors import abort_with
from wamesh_kit.settings import ServiceSettings

AUTHORIZATION_KEY = "authorization"
JWT_ALGORITHM = "HS256"
# RFC 7518 §3.2: an HS256 key must be at least as long as the hash.
MIN_JWT_SECRET_BYTES = 32
ALWAYS_PUBLIC_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

_log = logging.getLogger(__name__)


class Access(enum.Flag):
    """Who may call a method; combine with ``|``. PUBLIC needs no credentials at all."""

    PUBLIC = enum.auto()
    ADMIN = enum.auto()
    INTERNAL = enum.auto()
    TENANT = enum.auto()


PrincipalKind = Literal["admin", "internal", "tenant"]
# Full method name ("/wamesh.tenants.v1.TenantRegistry/CreateTenant") → who may call it.
Policies: TypeAlias = Mapping[str, Access]
_ACCESS_OF_KIND: Mapping[PrincipalKind, Access] = {
    "admin": Access.ADMIN,
    "internal": Access.INTERNAL,
    "tenant": Access.TENANT,
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller. ``tenant_id`` is set for tenant tokens only."""

    kind: PrincipalKind
    tenant_id: str | None = None

    def may_access(self, tenant_id: str) -> bool:
        """Admin and internal callers reach every tenant; a tenant only its own."""
        return self.kind != "tenant" or self.tenant_id == tenant_id


_current_principal: ContextVar[Principal | None] = ContextVar("wamesh_principal", default=None)


def current_principal() -> Principal:
    """The caller of the RPC being served; Unauthenticated on a public method without token."""
    principal = _current_principal.get()
    if principal is None:
        raise Unauthenticated("this call carries no credentials")
    return principal


def require_tenant_access(tenant_id: str) -> Principal:
    """Raises PermissionDenied unless the caller may read and write ``tenant_id``'s data."""
    principal = current_principal()
    if not principal.may_access(tenant_id):
        raise PermissionDenied("a tenant token may only access its own tenant")
    return principal


_Method = TypeVar("_Method", bound=Callable[..., object])
_ACCESS_ATTRIBUTE = "__wamesh_access__"


def requires(access: Access) -> Callable[[_Method], _Method]:
    """Declares who may call a servicer method: ``@requires(Access.ADMIN)``."""

    def declare(method: _Method) -> _Method:
        setattr(method, _ACCESS_ATTRIBUTE, access)
        return method

    return declare


def declared_access(servicer: object) -> dict[str, Access]:
    """Method name → access, for the servicer's methods marked with :func:`requires`."""
    declared = {}
    for name in dir(type(servicer)):
        access = getattr(getattr(type(servicer), name, None), _ACCESS_ATTRIBUTE, None)
        if isinstance(access, Access):
            declared[name] = access
    return declared


class Authenticator:
    """Turns a bearer token into a :class:`Principal`, or raises Unauthenticated."""

    def __init__(self, *, admin_token: str, internal_token: str, jwt_secret: str) -> None:
        if len(jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"the JWT secret must be at least {MIN_JWT_SECRET_BYTES} bytes")
        self._admin_token = admin_token.encode()
        self._internal_token = internal_token.encode()
        self._jwt_secret = jwt_secret

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Authenticator:
        return cls(
            admin_token=settings.admin_token.get_secret_value(),
            internal_token=settings.internal_token.get_secret_value(),
            jwt_secret=settings.jwt_secret.get_secret_value(),
        )

    def identify(self, token: str) -> Principal:
        if _same_token(token, self._admin_token):
            return Principal("admin")
        if _same_token(token, self._internal_token):
            return Principal("internal")
        try:
            claims = jwt.decode(
                token,
                self._jwt_secret,
                algorithms=[JWT_ALGORITHM],
                options={"require": ["exp", "tenant"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("the token is not valid") from None
        tenant_id = claims["tenant"]
        if not isinstance(tenant_id, str) or not tenant_id:
            raise Unauthenticated("the token names no tenant")
        return Principal("tenant", tenant_id)


def _same_token(presented: str, expected: bytes) -> bool:
    # An unset token must never match an empty bearer; compare_digest hides the length of
    # the common prefix from timing.
    return bool(expected) and hmac.compare_digest(presented.encode(), expected)


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` entry, if any."""
    for key, value in metadata or ():
        if key != AUTHORIZATION_KEY:
            continue
        text = value.decode() if isinstance(value, bytes) else value
        scheme, _, token = text.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


class AuthInterceptor(ServerInterceptor):
    """Decides each call before the servicer runs; the principal is then current for it."""

    def __init__(self, authenticator: Authenticator, policies: Policies) -> None:
        self._authenticator = authenticator
        self._policies = dict(policies)

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: grpc answers UNIMPLEMENTED (its stubs omit None)
            return handler
        method = handler_call_details.method
        decision: Principal | DomainError | None
        try:
            decision = self.authorize(method, handler_call_details.invocation_metadata)
        except (Unauthenticated, PermissionDenied) as refusal:
            _log.info("rpc refused: %s", refusal, extra={"rpc_method": method})
            decision = refusal
        return wrap_handler(handler, lambda context: _acting_as(context, decision))

    def authorize(
        self, method: str, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> Principal | None:
        """The caller of ``method``, None for an anonymous call to a public method; raises
        Unauthenticated or PermissionDenied."""
        policy = self.policy_for(method)
        token = bearer_token(metadata)
        if policy is not None and Access.PUBLIC in policy:
            # Credentials are optional here; a bad token just makes the call anonymous.
            with suppress(Unauthenticated):
                return self._authenticator.identify(token) if token else None
            return None
        if token is None:
            raise Unauthenticated("missing bearer token in the authorization metadata")
        principal = self._authenticator.identify(token)
        if policy is None:
            _log.warning(
                "rpc refused: the method declares no access policy", extra={"rpc_method": method}
            )
            raise PermissionDenied("this method is not open to any caller")
        if _ACCESS_OF_KIND[principal.kind] not in policy:
            raise PermissionDenied(f"this method is not open to {principal.kind} callers")
        return principal

    def policy_for(self, method: str) -> Access | None:
        service, _ = split_method(method)
        if service in ALWAYS_PUBLIC_SERVICES:
            return Access.PUBLIC
        return self._policies.get(method)


@asynccontextmanager
async def _acting_as(
    context: Context, decision: Principal | DomainError | None
) -> AsyncIterator[None]:
    if isinstance(decision, DomainError):
        await abort_with(context, decision)
    token = _current_principal.set(decision)
    try:
        yield
    finally:
        # A streaming handler abandoned mid-stream is closed later from another context,
        # where reset() fails; each RPC runs in its own task, so nothing leaks either way.
        with suppress(ValueError):
            _current_principal.reset(token)


def mint_tenant_token(secret: str, tenant_id: str, ttl: timedelta) -> str:
    """A tenant JWT valid for ``ttl`` (a negative ttl makes an expired one, for tests)."""
    # No "iat": PyJWT rejects an iat in the future, so clock skew between hosts would.
    claims = {"tenant": tenant_id, "exp": datetime.now(UTC) + ttl}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def bearer_metadata(token: str) -> list[tuple[str, str]]:
    """The metadata that authenticates one call: ``metadata=bearer_metadata(token)``."""
    return [(AUTHORIZATION_KEY, f"Bearer {token}")]


def bearer_interceptors(token: str) -> list[ClientInterceptor]:
    """Client interceptors that send ``token`` on every call that does not carry one."""
    header = f"Bearer {token}"

    def add_token(details: CallDetails) -> CallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        if AUTHORIZATION_KEY in metadata:
            return details
        metadata.add(AUTHORIZATION_KEY, header)
        return replace_details(details, metadata=metadata)

    return client_interceptors(add_token)
