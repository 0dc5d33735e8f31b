"""Background loops that outlive the failures of what they call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from wamesh_kit.rpc.errors import is_infrastructure_error

log = logging.getLogger(__name__)


async def repeat(
    step: Callable[[], Awaitable[bool]], stop: asyncio.Event, *, interval_s: float, name: str
) -> None:
    """Runs ``step`` until ``stop`` is set: at once again while it returns True (more work is
    waiting), else after ``interval_s``.

    A failing step is logged and tried again after ``interval_s``, never raised: a loop that
    died with its dependency (Postgres restarting, a peer away) would leave its work undone
    until the process restarts, with nothing to show for it.
    """
    while not stop.is_set():
        try:
            more = await step()
        except Exception as error:
            if is_infrastructure_error(error):
                log.warning("%s waits for a dependency", name, extra={"error": str(error)})
            else:
                log.exception("%s failed; retrying", name)
            more = False
        if not more:
            await pause(stop, interval_s)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleeps ``seconds``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
