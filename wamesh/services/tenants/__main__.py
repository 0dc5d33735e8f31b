"""``wamesh serve tenants``: the tenant registry, configured from WAMESH_* variables."""

from __future__ import annotations

import asyncio

from wamesh.libs.logs import configure_logging
from wamesh.libs.telemetry import configure_tracing, instrument_redis, shutdown_tracing
from wamesh.services.tenants.app import tenants_service
from wamesh.services.tenants.settings import TenantsSettings


async def serve(settings: TenantsSettings) -> None:
    async with tenants_service(settings) as server:
        await server.serve_until_signal()


def main() -> None:
    settings = TenantsSettings()
    configure_logging(
        settings.service_name, level=settings.log_level, log_format=settings.log_format
    )
    configure_tracing(settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    instrument_redis()
    try:
        asyncio.run(serve(settings))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
