"""The real workers registry, served in-process on a real socket, for the SDK to talk to."""

from __future__ import annotations

from tests.service_fixtures import ServiceFixtures
from tests.services.workers.workers_testkit import make_settings
from wamesh.workers.v1.workers_pb2_grpc import WorkerRegistryStub
from wamesh_workers.app import workers_service

fixtures = ServiceFixtures("workers", workers_service, make_settings, WorkerRegistryStub)
workers_dsn = fixtures.dsn
settings = fixtures.settings
metrics = fixtures.metrics
service = fixtures.service
admin = fixtures.admin
internal = fixtures.internal
connect = fixtures.connect
