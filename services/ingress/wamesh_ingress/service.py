"""The ingress service as the mesh sees it (see wamesh_kit.registry); it owns no database."""

from wamesh_kit.registry import Service

SERVICE = Service(name="ingress", main="wamesh_ingress.__main__:main")
