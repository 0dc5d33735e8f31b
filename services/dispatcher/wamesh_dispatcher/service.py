"""The dispatcher as the mesh sees it (see wamesh_kit.registry)."""

from pathlib import Path

from wamesh_kit.registry import Service

SERVICE = Service(
    name="dispatcher",
    main="wamesh_dispatcher.__main__:main",
    # Operators think in queues and dead letters, not in the service's name.
    more_cli=(
        ("queue", "wamesh_dispatcher.cli:queue_app"),
        ("dlq", "wamesh_dispatcher.cli:dlq_app"),
        ("send", "wamesh_dispatcher.cli:send_app"),
    ),
    migrations=Path(__file__).parent / "migrations",
    database="dispatcher",
)
