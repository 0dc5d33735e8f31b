"""The workers service as the mesh sees it (see wamesh_kit.registry)."""

from pathlib import Path

from wamesh_kit.registry import Service

SERVICE = Service(
    name="workers",
    main="wamesh_workers.__main__:main",
    cli="wamesh_workers.cli:workers_app",
    more_cli=(("sessions", "wamesh_workers.cli:sessions_app"),),
    migrations=Path(__file__).parent / "migrations",
    database="workers",
)
