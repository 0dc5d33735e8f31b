"""``wamesh dev sandbox``: the local Twilio, configured from WAMESH_SANDBOX_* variables."""

from __future__ import annotations

import logging

import uvicorn

from wamesh_sandbox.app import create_app
from wamesh_sandbox.record import RecordError
from wamesh_sandbox.settings import SandboxSettings, load_accounts


def main() -> None:
    settings = SandboxSettings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    host, _, port = settings.listen.rpartition(":")
    try:
        app = create_app(settings, load_accounts(settings))
    except (RecordError, ValueError, OSError) as error:
        raise SystemExit(f"wamesh sandbox: {error}") from None
    logging.getLogger("wamesh_sandbox").warning(
        "the Twilio sandbox (not Twilio) listens on http://%s: point a client at it with "
        "client.api.base_url",
        settings.listen,
    )
    uvicorn.run(
        app,
        host=host.strip("[]"),
        port=int(port),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
