"""Helpers of the tenants service tests ."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

import grpc
import grpc.aio
import pytest

from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh_kit.errors import DomainError
from wamesh_kit.rpc.errors import domain_error_from_rpc_error
from wamesh_tenants.settings import TenantsSettings

KEY_1 = "k1:" + base64.b64encode(os.urandom(32)).decode()
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> TenantsSettings:
    values: dict[str, Any] = {
        "grpc_listen": "127.0.0.1:0",
        "metrics_listen": "",
        "database_url": database_url,
        "redis_url": redis_url,
        "credential_keys": KEY_1,
        "credential_active_key": "k1",
        "shutdown_grace_s": 0,
        **overrides,
    }
    return TenantsSettings(**values)


def unique_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def unique_number() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


async def create_tenant(admin: Any, **fields: Any) -> pb.Tenant:
    fields.setdefault("tenant_id", unique_id())
    fields.setdefault("display_name", "Casa Pepe")
    response = await admin.CreateTenant(
        pb.CreateTenantRequest(request_id=uuid.uuid4().hex, **fields)
    )
    tenant: pb.Tenant = response.tenant
    return tenant


async def rpc_failure(call: Any) -> tuple[grpc.StatusCode, DomainError | None, str]:
    """The status code, domain error (with its field) and details a call fails with."""
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await call
    error = failure.value
    return error.code(), domain_error_from_rpc_error(error), error.details() or ""


async def assert_refused(call: Any, code: grpc.StatusCode, field: str | None = None) -> str:
    """Await ``call``, assert it fails with ``code`` naming ``field``; returns the details."""
    actual, error, details = await rpc_failure(call)
    assert actual == code, f"{actual} ({details}), expected {code}"
    if field is not None:
        assert error is not None
        assert error.field == field, details
    return details
