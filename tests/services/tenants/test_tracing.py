"""Spans of the tenants service name the tenant they are about (wamesh.tenant.id)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from tests.services.tenants.tenants_testkit import create_tenant, make_settings, unique_number
from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh.tenants.v1.tenants_pb2_grpc import TenantRegistryStub
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN
from wamesh_kit.telemetry import ATTR_TENANT_ID
from wamesh_tenants.app import tenants_service


async def test_each_call_about_a_tenant_names_it_on_its_span(
    tenants_dsn: str, redis_url: str
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = make_settings(tenants_dsn, redis_url)

    async with (
        tenants_service(settings, registry=CollectorRegistry(), tracer_provider=provider) as server,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_ADMIN_TOKEN) as admin_channel,
        make_channel(f"127.0.0.1:{server.port}", token=DEV_INTERNAL_TOKEN) as internal_channel,
    ):
        admin = TenantRegistryStub(admin_channel)
        internal = TenantRegistryStub(internal_channel)
        tenant = await create_tenant(admin)
        number = unique_number()
        await admin.AddSenderNumber(pb.AddSenderNumberRequest(tenant_id=tenant.id, number=number))
        await internal.ResolveNumber(pb.ResolveNumberRequest(number=number))

    named = {
        span.name.rsplit("/", 1)[-1]: (span.attributes or {}).get(ATTR_TENANT_ID)
        for span in exporter.get_finished_spans()
        if span.kind.name == "SERVER"
    }
    assert named == {
        "CreateTenant": tenant.id,
        "AddSenderNumber": tenant.id,
        "ResolveNumber": tenant.id,
    }
