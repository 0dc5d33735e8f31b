"""``wamesh serve conversations``: the conversation store, configured from WAMESH_* variables."""

from __future__ import annotations

import asyncio

from wamesh.libs.logs import configure_logging
from wamesh.libs.telemetry import configure_tracing, instrument_redis, shutdown_tracing
from wamesh.services.conversations.app import conversations_service
from wamesh.services.conversations.settings import ConversationsSettings


async def serve(settings: ConversationsSettings) -> None:
    async with conversations_service(settings) as server:
        await server.serve_until_signal()


def main() -> None:
    settings = ConversationsSettings()
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
