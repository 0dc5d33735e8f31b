"""TenantRegistry over gRPC: validate, call the store, invalidate caches, answer.

Access: every method needs the admin token, except ResolveNumber (internal services, and
admins for debugging), GetTenant (admins, and the services that act on a tenant's settings:
the dispatcher's senders and limits, the bot's menu) and GetCredentials (the internal
identity only: it returns secrets).
"""

from __future__ import annotations

from typing import Any

import grpc

from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit import ids
from wamesh_kit.errors import InvalidArgument
from wamesh_kit.numbers import normalize_number
from wamesh_kit.paging import PageTokens
from wamesh_kit.rpc.auth import Access, requires
from wamesh_kit.telemetry import tag_tenant
from wamesh_kit.timestamps import timestamp
from wamesh_tenants import validation
from wamesh_tenants.crypto import CredentialCipher
from wamesh_tenants.routes import RouteCache
from wamesh_tenants.store import (
    STATUS_NAMES,
    SealedCredentials,
    TenantFields,
    TenantStore,
    to_json,
)

Context = grpc.aio.ServicerContext[Any, Any]
# Tenants by id.
PAGES = PageTokens[tuple[str]](str)

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
_REASON = pb.TenantInvalidationReason


class TenantRegistry(tenants_pb2_grpc.TenantRegistryServicer):
    def __init__(self, store: TenantStore, routes: RouteCache, cipher: CredentialCipher) -> None:
        self._store = store
        self._routes = routes
        self._cipher = cipher

    @requires(Access.ADMIN)
    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: Context
    ) -> pb.CreateTenantResponse:
        if not request.request_id.strip():
            raise InvalidArgument(
                "is required so a retry cannot create a second tenant", field="request_id"
            )
        tenant_id = ids.tenant_id(request.tenant_id) if request.tenant_id else ""
        fields = TenantFields(
            display_name=validation.display_name(request.display_name),
            time_zone=validation.time_zone(request.time_zone),
            default_language=validation.language(request.default_language),
            support_contact=validation.support_contact(request.support_contact),
            limits=validation.limits(request.limits),
            bot=validation.bot(request.bot),
        )
        tenant, already_existed = await self._store.create(request.request_id, tenant_id, fields)
        tag_tenant(tenant.id)
        return pb.CreateTenantResponse(tenant=tenant, already_existed=already_existed)

    @requires(Access.ADMIN | Access.INTERNAL)
    async def GetTenant(
        self, request: pb.GetTenantRequest, context: Context
    ) -> pb.GetTenantResponse:
        return pb.GetTenantResponse(tenant=await self._store.get(_tenant_id(request.tenant_id)))

    @requires(Access.ADMIN)
    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: Context
    ) -> pb.ListTenantsResponse:
        if request.page_size < 0:
            raise InvalidArgument("must not be negative", field="page_size")
        size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        status = _status_filter(request.status)
        query = ("tenants", str(status))
        after = PAGES.decode(request.page_token, *query)
        # One extra row tells whether another page exists without a second query.
        rows = await self._store.list_tenants(
            after_id=after[0] if after else "", limit=size + 1, status=status
        )
        page, more = rows[:size], len(rows) > size
        token = PAGES.encode((page[-1].id,), *query) if more else ""
        return pb.ListTenantsResponse(tenants=page, next_page_token=token)

    @requires(Access.ADMIN)
    async def UpdateTenant(
        self, request: pb.UpdateTenantRequest, context: Context
    ) -> pb.UpdateTenantResponse:
        tenant_id = _tenant_id(request.tenant_id)
        if request.expected_version <= 0:
            raise InvalidArgument(
                "is required: the version the change is based on", field="expected_version"
            )
        values: dict[str, Any] = {}
        if request.HasField("display_name"):
            values["display_name"] = validation.display_name(request.display_name)
        if request.HasField("time_zone"):
            values["time_zone"] = validation.time_zone(request.time_zone)
        if request.HasField("default_language"):
            values["default_language"] = validation.language(request.default_language)
        if request.HasField("support_contact"):
            values["support_contact"] = validation.support_contact(request.support_contact)
        if request.HasField("limits"):
            values["limits"] = to_json(validation.limits(request.limits))
        if request.HasField("bot"):
            values["bot"] = to_json(validation.bot(request.bot))
        change = await self._store.update(tenant_id, request.expected_version, values)
        await self._routes.invalidate(change, _REASON.TENANT_INVALIDATION_REASON_SETTINGS)
        return pb.UpdateTenantResponse(tenant=change.tenant)

    @requires(Access.ADMIN)
    async def SetTenantStatus(
        self, request: pb.SetTenantStatusRequest, context: Context
    ) -> pb.SetTenantStatusResponse:
        tenant_id = _tenant_id(request.tenant_id)
        if request.status not in STATUS_NAMES:
            raise InvalidArgument("must be ACTIVE or SUSPENDED", field="status")
        change = await self._store.set_status(tenant_id, STATUS_NAMES[request.status])
        await self._routes.invalidate(change, _REASON.TENANT_INVALIDATION_REASON_STATUS)
        return pb.SetTenantStatusResponse(tenant=change.tenant)

    @requires(Access.ADMIN)
    async def AddSenderNumber(
        self, request: pb.AddSenderNumberRequest, context: Context
    ) -> pb.AddSenderNumberResponse:
        tenant_id = _tenant_id(request.tenant_id)
        number = normalize_number(request.number)
        service_sid = validation.messaging_service_sid(request.messaging_service_sid)
        change = await self._store.add_number(tenant_id, number, service_sid)
        await self._routes.invalidate(change, _REASON.TENANT_INVALIDATION_REASON_ROUTE)
        return pb.AddSenderNumberResponse(sender_number=_number_of(change.tenant, number))

    @requires(Access.ADMIN)
    async def RemoveSenderNumber(
        self, request: pb.RemoveSenderNumberRequest, context: Context
    ) -> pb.RemoveSenderNumberResponse:
        tenant_id = _tenant_id(request.tenant_id)
        change = await self._store.remove_number(tenant_id, normalize_number(request.number))
        await self._routes.invalidate(change, _REASON.TENANT_INVALIDATION_REASON_ROUTE)
        return pb.RemoveSenderNumberResponse()

    @requires(Access.ADMIN)
    async def MoveSenderNumber(
        self, request: pb.MoveSenderNumberRequest, context: Context
    ) -> pb.MoveSenderNumberResponse:
        number = normalize_number(request.number)
        source = _tenant_id(request.from_tenant_id, field="from_tenant_id")
        target = _tenant_id(request.to_tenant_id, field="to_tenant_id")
        if source == target:
            raise InvalidArgument("must differ from from_tenant_id", field="to_tenant_id")
        change = await self._store.move_number(number, source, target)
        await self._routes.invalidate(change, _REASON.TENANT_INVALIDATION_REASON_ROUTE)
        return pb.MoveSenderNumberResponse(sender_number=_number_of(change.tenant, number))

    @requires(Access.ADMIN)
    async def SetCredentials(
        self, request: pb.SetCredentialsRequest, context: Context
    ) -> pb.SetCredentialsResponse:
        tenant_id = _tenant_id(request.tenant_id)
        given = validation.credentials(request.credentials)
        sealed = SealedCredentials(
            account_sid=given.account_sid,
            api_key_sid=given.api_key_sid,
            auth_token=self._cipher.seal(given.auth_token, tenant_id=tenant_id, field="auth_token"),
            api_key_secret=(
                self._cipher.seal(given.api_key_secret, tenant_id=tenant_id, field="api_key_secret")
                if given.api_key_secret
                else None
            ),
        )
        change = await self._store.set_credentials(tenant_id, sealed)
        await self._routes.invalidate(change, _REASON.TENANT_INVALIDATION_REASON_CREDENTIALS)
        return pb.SetCredentialsResponse(credentials=change.tenant.credentials)

    @requires(Access.INTERNAL | Access.ADMIN)
    async def ResolveNumber(
        self, request: pb.ResolveNumberRequest, context: Context
    ) -> pb.ResolveNumberResponse:
        number = normalize_number(request.number)
        lookup = await self._routes.get(number)
        if lookup.route is not None:
            tag_tenant(lookup.route.tenant_id)
            return lookup.route
        route = await self._store.resolve(number)
        if lookup.generation is not None:
            await self._routes.put(number, route, lookup.generation)
        tag_tenant(route.tenant_id)
        return route

    @requires(Access.INTERNAL)
    async def GetCredentials(
        self, request: pb.GetCredentialsRequest, context: Context
    ) -> pb.GetCredentialsResponse:
        tenant_id = _tenant_id(request.tenant_id)
        sealed = await self._store.get_credentials(tenant_id)
        secret = sealed.api_key_secret
        credentials = pb.TwilioCredentials(
            account_sid=sealed.account_sid,
            auth_token=self._cipher.open(
                sealed.auth_token, tenant_id=tenant_id, field="auth_token"
            ),
            api_key_sid=sealed.api_key_sid,
            api_key_secret=(
                self._cipher.open(secret, tenant_id=tenant_id, field="api_key_secret")
                if secret is not None
                else ""
            ),
        )
        response = pb.GetCredentialsResponse(credentials=credentials)
        if sealed.updated_at is not None:
            response.updated_at.CopyFrom(timestamp(sealed.updated_at))
        return response


def _tenant_id(value: str, *, field: str = "tenant_id") -> str:
    return tag_tenant(ids.tenant_id(value, field=field))


def _status_filter(status: pb.TenantStatus.ValueType) -> str | None:
    if status == pb.TENANT_STATUS_UNSPECIFIED:
        return None
    if status not in STATUS_NAMES:
        raise InvalidArgument("is not a known status", field="status")
    return STATUS_NAMES[status]


def _number_of(tenant: pb.Tenant, number: str) -> pb.SenderNumber:
    return next(n for n in tenant.sender_numbers if n.number == number)
