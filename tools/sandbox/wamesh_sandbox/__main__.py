"""``wamesh dev sandbox``: the local Twilio, configured from WAMESH_SANDBOX_* variables."""

from __future__ import annotations

import logging
import signal
from types import FrameType

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
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host.strip("[]"),
            port=int(port),
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=5,
        )
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    # uvicorn drains on SIGTERM or SIGINT, then re-raises the signal to the handler it found:
    # Python's default would end a cleanly stopped sandbox as "killed by SIGTERM", where
    # wamesh's services end 0 after a drain. This one also stops a signal that comes before
    # uvicorn has put its own in place.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    server.run()
    if not server.started:
        raise SystemExit(f"wamesh sandbox: it could not start on {settings.listen}")


if __name__ == "__main__":
    main()
