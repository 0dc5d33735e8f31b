"""The garbage collector, told what a started service will keep for good."""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect once, then move every object alive (modules, the app, pools, caches so far)
    to the permanent generation, which collections never scan.

    A started service holds many such objects, and every full collection walked them all,
    stalling every request in flight (docs/performance.md has the pauses measured). Call it
    once the service is up and before it takes traffic.
    """
    gc.collect()
    gc.freeze()
