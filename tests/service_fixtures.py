"""The fixtures every service's tests need, made once: migrate, settings, serve, connect.

A service's ``conftest.py`` names them, so a reader sees every fixture it has::

    fixtures = ServiceFixtures("tenants", tenants_service, make_settings, TenantRegistryStub)
    tenants_dsn = fixtures.dsn            # module scope: a fresh database at head
    settings = fixtures.settings          # the service's settings on that database
    metrics = fixtures.metrics            # the registry the service exports its metrics to
    service = fixtures.service            # the service served in-process on a real socket
    connect = fixtures.connect            # connect(token): a stub over our client plumbing
    admin = fixtures.admin
    internal = fixtures.internal
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import grpc.aio
import pytest
from prometheus_client import CollectorRegistry

from wamesh_kit import registry
from wamesh_kit.localinfra import LocalPostgres
from wamesh_kit.migrations import MigrationHistory, service_histories, upgrade_database
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN, DatabaseServiceSettings

Settings = TypeVar("Settings", bound=DatabaseServiceSettings)
Serve = Callable[..., AbstractAsyncContextManager[GrpcService]]
Connect = Callable[[str | None], Any]


class ServiceFixtures(Generic[Settings]):
    """The fixtures of the service registered as ``name``; their names are the attributes'."""

    def __init__(
        self,
        name: str,
        serve: Serve,
        make_settings: Callable[[str, str], Settings],
        stub: Callable[[grpc.aio.Channel], Any],
    ) -> None:
        spec = registry.service(name)
        if spec.migrations is None:
            raise ValueError(f"{name} owns no database: these fixtures are for those that do")
        history = MigrationHistory(name, spec.migrations)

        @pytest.fixture(scope="module", name=f"{name}_dsn")
        def dsn(database_dsn: str) -> str:
            upgrade_database(database_dsn, history)
            return database_dsn

        @pytest.fixture(name="settings")
        def settings(request: pytest.FixtureRequest, redis_url: str) -> Settings:
            return make_settings(request.getfixturevalue(f"{name}_dsn"), redis_url)

        @pytest.fixture(name="metrics")
        def metrics() -> CollectorRegistry:
            """The service's own metrics registry, for a test to read what it exports."""
            return CollectorRegistry()

        @pytest.fixture(name="service")
        async def service(
            settings: Settings, metrics: CollectorRegistry
        ) -> AsyncIterator[GrpcService]:
            async with serve(settings, registry=metrics) as server:
                yield server

        @pytest.fixture(name="connect")
        def connect(
            service: GrpcService, grpc_channels: Callable[[int, str | None], Any]
        ) -> Connect:
            return lambda token: stub(grpc_channels(service.port, token))

        @pytest.fixture(name="admin")
        def admin(connect: Connect) -> Any:
            return connect(DEV_ADMIN_TOKEN)

        @pytest.fixture(name="internal")
        def internal(connect: Connect) -> Any:
            return connect(DEV_INTERNAL_TOKEN)

        self.dsn, self.settings, self.metrics, self.service = dsn, settings, metrics, service
        self.connect, self.admin, self.internal = connect, admin, internal


@contextmanager
def own_postgres(data_dir: Path, service: str) -> Iterator[LocalPostgres]:
    """A Postgres of the test's own holding ``service``'s database, migrated: for a test that
    stops it, since the suite's shared one must keep running for the other tests. Durable: the
    test kills it the way a crash would and expects what was committed back."""
    postgres = LocalPostgres(data_dir / "postgres", durable=True)
    postgres.start()
    try:
        postgres.create_database(service)
        history = next(h for h in service_histories() if h.name == service)
        upgrade_database(postgres.dsn(service), history)
        yield postgres
    finally:
        postgres.stop()
