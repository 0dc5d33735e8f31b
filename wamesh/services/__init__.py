"""One package per service; each holds its whole story (server, domain, store, migrations).

A service plugs into ``wamesh serve <name>`` and ``make up`` by having a ``__main__`` module
with a ``main()`` that reads its settings from ``WAMESH_*`` variables and serves until SIGTERM.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path


def available_services() -> list[str]:
    """Names of the service packages that can be served, sorted."""
    root = Path(__file__).parent
    return sorted(
        module.name
        for module in pkgutil.iter_modules([str(root)])
        if module.ispkg and (root / module.name / "__main__.py").exists()
    )


def service_main(name: str) -> Callable[[], None]:
    """The ``main`` of service ``name``; KeyError names the services there are."""
    if name not in available_services():
        raise KeyError(name)
    module = importlib.import_module(f"wamesh.services.{name}.__main__")
    main: Callable[[], None] = module.main
    return main
