"""The conversations service as the mesh sees it (see wamesh_kit.registry)."""

from pathlib import Path

from wamesh_kit.registry import Service

SERVICE = Service(
    name="conversations",
    main="wamesh_conversations.__main__:main",
    cli="wamesh_conversations.cli:conversations_app",
    migrations=Path(__file__).parent / "migrations",
    database="conversations",
)
