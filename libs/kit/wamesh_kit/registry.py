"""The service registry: each service package declares itself once, through an entry point.

A service's ``pyproject.toml`` names one :class:`Service` under the ``wamesh.services`` group::

    [project.entry-points."wamesh.services"]
    tenants = "wamesh_tenants.service:SERVICE"

``wamesh serve``, ``wamesh migrate``, ``wamesh dev up``, the local infrastructure and the CLI
read that declaration and nothing else: the kit never knows where a service sits on disk, and
adding a service means adding its package. The declaration names its ``main`` and CLI group
as ``module:attribute`` references, loaded only when used, so listing the services imports
none of them (ingress's Starlette stays out of ``wamesh migrate tenants``).
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import typer

ENTRY_POINT_GROUP = "wamesh.services"
# Development tools (the local Twilio sandbox): run by `wamesh dev up`, given a command group
# under `wamesh dev`, never served in a cluster.
DEV_ENTRY_POINT_GROUP = "wamesh.dev"
_T = TypeVar("_T", "Service", "DevTool")


class RegistryError(RuntimeError):
    """A ``wamesh.services`` entry point that does not declare a service properly."""


@dataclass(frozen=True)
class Service:
    """What the mesh needs to know of one service.

    ``main`` serves until SIGTERM, configured only from ``WAMESH_*`` variables. ``cli`` is the
    service's command group under ``wamesh <name>``. ``migrations`` is its Alembic script
    directory and ``database`` the name of its own database: both or neither.
    """

    name: str
    main: str
    cli: str | None = None
    migrations: Path | None = None
    database: str | None = None
    # More top-level command groups, by name (workers adds `wamesh sessions`).
    more_cli: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if (self.migrations is None) != (self.database is None):
            raise RegistryError(f"service {self.name!r}: give migrations and database together")

    def load_main(self) -> Callable[[], None]:
        main: Callable[[], None] = pkgutil.resolve_name(self.main)
        return main

    def load_cli(self) -> typer.Typer | None:
        if self.cli is None:
            return None
        group: typer.Typer = pkgutil.resolve_name(self.cli)
        return group

    def load_more_cli(self) -> dict[str, typer.Typer]:
        return {name: pkgutil.resolve_name(reference) for name, reference in self.more_cli}


@dataclass(frozen=True)
class DevTool:
    """A development tool: ``main`` serves until SIGTERM, configured from ``WAMESH_*``
    variables (``WAMESH_DEV_DATA_DIR`` says where ``wamesh dev up`` keeps its data); ``cli``
    is its command group under ``wamesh dev <name>``."""

    name: str
    main: str
    cli: str | None = None
    # What the services are told when the tool runs beside them under `wamesh dev up`
    # (the sandbox: send to me, not to Twilio).
    service_env: tuple[tuple[str, str], ...] = ()

    def load_main(self) -> Callable[[], None]:
        main: Callable[[], None] = pkgutil.resolve_name(self.main)
        return main

    def load_cli(self) -> typer.Typer | None:
        if self.cli is None:
            return None
        group: typer.Typer = pkgutil.resolve_name(self.cli)
        return group


def _declared(group: str, kind: type[_T]) -> dict[str, _T]:
    found: dict[str, _T] = {}
    for entry in entry_points(group=group):
        declared = entry.load()
        if not isinstance(declared, kind):
            raise RegistryError(
                f"{entry.value} is a {type(declared).__name__}, not a {kind.__name__}"
            )
        name = getattr(declared, "name", None)
        if name != entry.name:
            raise RegistryError(f"{entry.value} declares {name!r} as {entry.name!r}")
        found[entry.name] = declared
    return dict(sorted(found.items()))


def services() -> dict[str, Service]:
    """Every installed service, by name, sorted."""
    return _declared(ENTRY_POINT_GROUP, Service)


def dev_tools() -> dict[str, DevTool]:
    """Every installed development tool, by name, sorted."""
    return _declared(DEV_ENTRY_POINT_GROUP, DevTool)


def service(name: str) -> Service:
    """One service by name; KeyError when no installed package declares it."""
    return services()[name]


def databases() -> list[str]:
    """The database of every service that owns one."""
    return [s.database for s in services().values() if s.database is not None]
