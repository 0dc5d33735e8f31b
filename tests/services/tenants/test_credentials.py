"""Twilio credentials: write-only for admins, sealed at rest, readable by the internal identity,
re-encrypted by key rotation, and never in a log line, a span or an error."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from tests.services.tenants.tenants_testkit import (
    ACCOUNT_SID,
    KEY_1,
    assert_refused,
    create_tenant,
    make_settings,
)
from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit.db import make_engine
from wamesh_kit.rpc.auth import mint_tenant_token
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN, DEV_JWT_SECRET
from wamesh_tenants.app import tenants_service
from wamesh_tenants.rotation import rotate_credentials
from wamesh_tenants.store import TenantStore

INVALID = grpc.StatusCode.INVALID_ARGUMENT
API_KEY_SID = "SK" + "fedcba9876543210" * 2
KEY_2 = "k2:" + base64.b64encode(os.urandom(32)).decode()


def a_token() -> str:
    return "tok_" + secrets.token_hex(16)


def twilio_credentials(**fields: Any) -> pb.TwilioCredentials:
    values = {"account_sid": ACCOUNT_SID, "auth_token": a_token(), **fields}
    return pb.TwilioCredentials(**values)


async def set_credentials(admin: Any, tenant_id: str, credentials: pb.TwilioCredentials) -> Any:
    return await admin.SetCredentials(
        pb.SetCredentialsRequest(tenant_id=tenant_id, credentials=credentials)
    )


async def get_credentials(internal: Any, tenant_id: str) -> pb.TwilioCredentials:
    response = await internal.GetCredentials(pb.GetCredentialsRequest(tenant_id=tenant_id))
    credentials: pb.TwilioCredentials = response.credentials
    return credentials


async def test_set_then_get_returns_the_secrets_to_the_internal_identity(
    admin: Any, internal: Any
) -> None:
    tenant = await create_tenant(admin)
    given = twilio_credentials(api_key_sid=API_KEY_SID, api_key_secret=a_token())

    summary = (await set_credentials(admin, tenant.id, given)).credentials

    assert summary.account_sid == ACCOUNT_SID
    assert summary.api_key_sid == API_KEY_SID
    assert summary.updated_at.seconds > 0
    assert await get_credentials(internal, tenant.id) == given
    replaced = twilio_credentials()
    await set_credentials(admin, tenant.id, replaced)
    assert await get_credentials(internal, tenant.id) == replaced


async def test_no_admin_rpc_returns_a_secret(admin: Any, connect: Any) -> None:
    tenant = await create_tenant(admin)
    given = twilio_credentials(api_key_sid=API_KEY_SID, api_key_secret=a_token())
    number = "+1555" + str(secrets.randbelow(10**7)).zfill(7)
    await admin.AddSenderNumber(pb.AddSenderNumberRequest(tenant_id=tenant.id, number=number))
    responses = [
        await set_credentials(admin, tenant.id, given),
        await admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant.id)),
        await admin.ListTenants(pb.ListTenantsRequest(page_size=500)),
        await admin.ResolveNumber(pb.ResolveNumberRequest(number=number)),
    ]
    for response in responses:
        wire = response.SerializeToString()
        assert given.auth_token.encode() not in wire
        assert given.api_key_secret.encode() not in wire

    request = pb.GetCredentialsRequest(tenant_id=tenant.id)
    await assert_refused(admin.GetCredentials(request), grpc.StatusCode.PERMISSION_DENIED)
    own_tenant = connect(mint_tenant_token(DEV_JWT_SECRET, tenant.id, timedelta(minutes=5)))
    await assert_refused(own_tenant.GetCredentials(request), grpc.StatusCode.PERMISSION_DENIED)
    await assert_refused(connect(None).GetCredentials(request), grpc.StatusCode.UNAUTHENTICATED)


@pytest.mark.parametrize(
    ("credentials", "field"),
    [
        (twilio_credentials(account_sid=""), "credentials.account_sid"),
        (twilio_credentials(account_sid="AC123"), "credentials.account_sid"),
        (twilio_credentials(account_sid="AC" + "g" * 32), "credentials.account_sid"),
        (twilio_credentials(account_sid="XX" + "0" * 32), "credentials.account_sid"),
        (twilio_credentials(auth_token=""), "credentials.auth_token"),
        (twilio_credentials(auth_token="   "), "credentials.auth_token"),
        (twilio_credentials(api_key_sid="SK1", api_key_secret="s"), "credentials.api_key_sid"),
        (twilio_credentials(api_key_sid=API_KEY_SID), "credentials.api_key_secret"),
        (twilio_credentials(api_key_secret="orphan"), "credentials.api_key_sid"),
    ],
)
async def test_malformed_credentials_are_refused_naming_the_field(
    admin: Any, internal: Any, credentials: pb.TwilioCredentials, field: str
) -> None:
    tenant = await create_tenant(admin)
    details = await assert_refused(set_credentials(admin, tenant.id, credentials), INVALID, field)

    if credentials.auth_token.strip():
        assert credentials.auth_token not in details
    await assert_refused(
        internal.GetCredentials(pb.GetCredentialsRequest(tenant_id=tenant.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


async def test_credentials_of_an_unknown_tenant(admin: Any, internal: Any) -> None:
    token = a_token()
    details = await assert_refused(
        set_credentials(admin, "no-such-tenant", twilio_credentials(auth_token=token)),
        grpc.StatusCode.NOT_FOUND,
        "tenant_id",
    )
    assert token not in details
    await assert_refused(
        internal.GetCredentials(pb.GetCredentialsRequest(tenant_id="no-such-tenant")),
        grpc.StatusCode.NOT_FOUND,
        "tenant_id",
    )


def pg_dump(database_url: str) -> bytes:
    from pgserver._commands import POSTGRES_BIN_PATH

    result = subprocess.run(
        [str(Path(POSTGRES_BIN_PATH) / "pg_dump"), "--data-only", "-d", database_url],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout


async def test_the_database_dump_holds_no_secret(
    admin: Any, internal: Any, tenants_dsn: str
) -> None:
    tenant = await create_tenant(admin)
    given = twilio_credentials(api_key_sid=API_KEY_SID, api_key_secret=a_token())
    await set_credentials(admin, tenant.id, given)

    dump = pg_dump(tenants_dsn)

    assert ACCOUNT_SID.encode() in dump, "the dump does not hold the tenant's row at all"
    for secret in (given.auth_token, given.api_key_secret):
        for form in (
            secret.encode(),
            secret.encode().hex().encode(),
            base64.b64encode(secret.encode()),
        ):
            assert form not in dump
    assert await get_credentials(internal, tenant.id) == given


async def test_rotation_reseals_every_tenant_under_the_new_key(
    admin: Any, internal: Any, tenants_dsn: str, redis_url: str
) -> None:
    given = {}
    for _ in range(5):
        tenant = await create_tenant(admin)
        given[tenant.id] = twilio_credentials(api_key_sid=API_KEY_SID, api_key_secret=a_token())
        await set_credentials(admin, tenant.id, given[tenant.id])
    both_keys = make_settings(
        tenants_dsn, redis_url, credential_keys=f"{KEY_1},{KEY_2}", credential_active_key="k2"
    )
    engine = make_engine(tenants_dsn, pool_size=1)
    try:
        report = await rotate_credentials(TenantStore(engine), both_keys.cipher(), batch_size=2)
        again = await rotate_credentials(TenantStore(engine), both_keys.cipher(), batch_size=2)
        async with engine.connect() as connection:
            key_ids = set((await connection.scalars(text("SELECT key_id FROM credentials"))).all())
    finally:
        await engine.dispose()

    assert report.resealed >= len(given)
    assert again.resealed == 0, "a second rotation found rows the first one missed"
    assert key_ids == {"k2"}
    # A service that holds only the new key reads every secret: the old key can be retired.
    only_new_key = make_settings(
        tenants_dsn, redis_url, credential_keys=KEY_2, credential_active_key="k2"
    )
    async with (
        tenants_service(only_new_key, registry=CollectorRegistry()) as server,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_INTERNAL_TOKEN) as channel,
    ):
        new_internal = tenants_pb2_grpc.TenantRegistryStub(channel)
        for tenant_id, credentials in given.items():
            assert await get_credentials(new_internal, tenant_id) == credentials


async def test_secrets_never_reach_logs_spans_or_errors(
    tenants_dsn: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(tenants_dsn, redis_url, log_level="DEBUG")
    given = twilio_credentials(api_key_sid=API_KEY_SID, api_key_secret=a_token())
    caplog.set_level(logging.DEBUG)

    async with (
        tenants_service(settings, registry=CollectorRegistry(), tracer_provider=provider) as server,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_ADMIN_TOKEN) as admin_channel,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_INTERNAL_TOKEN) as internal_channel,
    ):
        admin = tenants_pb2_grpc.TenantRegistryStub(admin_channel)
        internal = tenants_pb2_grpc.TenantRegistryStub(internal_channel)
        tenant = await create_tenant(admin)
        await set_credentials(admin, tenant.id, given)
        assert await get_credentials(internal, tenant.id) == given
        bad = twilio_credentials(account_sid="AC-bad", auth_token=given.auth_token)
        details = await assert_refused(set_credentials(admin, tenant.id, bad), INVALID)
        await assert_refused(
            admin.GetCredentials(pb.GetCredentialsRequest(tenant_id=tenant.id)),
            grpc.StatusCode.PERMISSION_DENIED,
        )

    spans = exporter.get_finished_spans()
    assert any("GetCredentials" in span.name for span in spans), "no span was captured"
    span_text = repr([(s.name, dict(s.attributes or {}), s.events) for s in spans])
    log_text = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert caplog.records, "no log line was captured"
    for secret in (given.auth_token, given.api_key_secret):
        assert secret not in span_text
        assert secret not in log_text
        assert secret not in details
