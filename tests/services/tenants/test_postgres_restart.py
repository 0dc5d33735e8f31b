"""Postgres stops under a running tenants service: UNAVAILABLE meanwhile, healed on its return.

A Postgres of its own (the suite's shared one must keep running for the other tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from tests.service_fixtures import own_postgres as service_postgres
from tests.services.tenants.tenants_testkit import assert_refused, create_tenant, make_settings
from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit.localinfra import LocalPostgres
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN
from wamesh_tenants.app import tenants_service


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    with service_postgres(tmp_path, "tenants") as postgres:
        yield postgres


async def test_unavailable_while_postgres_is_down_and_recovers_by_itself(
    own_postgres: LocalPostgres, redis_url: str
) -> None:
    settings = make_settings(own_postgres.dsn("tenants"), redis_url)
    async with (
        tenants_service(settings, registry=CollectorRegistry()) as server,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_ADMIN_TOKEN) as channel,
    ):
        admin = tenants_pb2_grpc.TenantRegistryStub(channel)
        before = await create_tenant(admin)

        await asyncio.to_thread(own_postgres.kill)
        details = await assert_refused(
            admin.GetTenant(pb.GetTenantRequest(tenant_id=before.id)),
            grpc.StatusCode.UNAVAILABLE,
        )
        await assert_refused(create_tenant(admin), grpc.StatusCode.UNAVAILABLE)
        assert "Traceback" not in details
        assert own_postgres.dsn() not in details

        await asyncio.to_thread(own_postgres.start)
        # The pool's dead connections are replaced on first use: no restart, no retry loop.
        fetched = await admin.GetTenant(pb.GetTenantRequest(tenant_id=before.id))
        after = await create_tenant(admin)

    assert fetched.tenant == before
    assert after.version == 1
