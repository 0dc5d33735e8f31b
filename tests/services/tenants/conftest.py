"""The tenants service served in-process on a real socket, over real Postgres and Redis."""

from __future__ import annotations

from tests.service_fixtures import ServiceFixtures
from tests.services.tenants.tenants_testkit import make_settings
from wamesh.tenants.v1.tenants_pb2_grpc import TenantRegistryStub
from wamesh_tenants.app import tenants_service

fixtures = ServiceFixtures("tenants", tenants_service, make_settings, TenantRegistryStub)
tenants_dsn = fixtures.dsn
settings = fixtures.settings
metrics = fixtures.metrics
service = fixtures.service
connect = fixtures.connect
admin = fixtures.admin
internal = fixtures.internal
