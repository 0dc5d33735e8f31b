"""``wamesh serve ingress``: the webhook door, configured from WAMESH_* variables."""

from __future__ import annotations

from typing import Any

import uvicorn

from wamesh_ingress.app import create_app
from wamesh_ingress.settings import IngressSettings
from wamesh_kit.heap import freeze_startup_heap
from wamesh_kit.logs import configure_logging
from wamesh_kit.telemetry import configure_tracing, instrument_asgi, instrument_redis


def main() -> None:
    settings = IngressSettings()
    configure_logging(
        settings.service_name, level=settings.log_level, log_format=settings.log_format
    )
    configure_tracing(settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    instrument_redis()
    host, _, port = settings.http_listen.rpartition(":")
    app = instrument_asgi(create_app(settings))
    freeze_startup_heap()  # the imports: nearly all of what the ingress keeps for good
    uvicorn.run(
        app,
        host=host.strip("[]") or "0.0.0.0",
        port=int(port),
        loop="uvloop",
        **uvicorn_options(settings),
    )


def uvicorn_options(settings: IngressSettings) -> dict[str, Any]:
    """How uvicorn serves the ingress, wherever it is started from."""
    return {
        "http": "httptools",
        # X-Forwarded-* are read by the ingress itself, from trusted proxies only.
        "proxy_headers": False,
        "server_header": False,
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": 10,
        "limit_concurrency": settings.http_limit_concurrency,
        "timeout_keep_alive": int(settings.http_keepalive_s),
    }


if __name__ == "__main__":
    main()
