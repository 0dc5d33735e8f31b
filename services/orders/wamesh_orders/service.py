"""The orders service as the mesh sees it (see wamesh_kit.registry)."""

from pathlib import Path

from wamesh_kit.registry import Service

SERVICE = Service(
    name="orders",
    main="wamesh_orders.__main__:main",
    cli="wamesh_orders.cli:app",
    migrations=Path(__file__).parent / "migrations",
    database="orders",
)
