"""The tenants service as the mesh sees it (see wamesh_kit.registry)."""

from pathlib import Path

from wamesh_kit.registry import Service

SERVICE = Service(
    name="tenants",
    main="wamesh_tenants.__main__:main",
    cli="wamesh_tenants.cli:tenants_app",
    migrations=Path(__file__).parent / "migrations",
    database="tenants",
)
