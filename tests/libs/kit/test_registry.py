"""The service registry: services are found through their packages' entry points alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from wamesh_kit import registry
from wamesh_kit.registry import RegistryError, Service

LATER = Service(
    name="later",
    main="tests.libs.kit.test_registry:serve_later",
    migrations=Path(__file__).parent / "example_migrations",
    database="later",
)
NOT_A_SERVICE = object()
MISNAMED = Service(name="other", main="tests.libs.kit.test_registry:serve_later")
served: list[str] = []


def serve_later() -> None:
    served.append("later")


def _install(site: Path, distribution: str, entries: dict[str, str]) -> None:
    """What installing a package that declares services leaves on sys.path: its dist-info."""
    info = site / f"{distribution}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{lines}")


def test_the_mesh_is_the_installed_service_packages() -> None:
    found = registry.services()
    assert list(found) == ["conversations", "dispatcher", "ingress", "orders", "tenants", "workers"]
    assert found["ingress"].database is None
    assert registry.databases() == ["conversations", "dispatcher", "orders", "tenants", "workers"]


def test_the_sandbox_is_a_development_tool_and_never_a_service() -> None:
    tools = registry.dev_tools()

    assert list(tools) == ["sandbox"]
    assert "sandbox" not in registry.services()
    assert callable(tools["sandbox"].load_main())
    assert tools["sandbox"].load_cli() is not None


def test_installing_a_package_adds_its_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(tmp_path, "wamesh_later", {"later": "tests.libs.kit.test_registry:LATER"})
    monkeypatch.syspath_prepend(str(tmp_path))

    assert registry.service("later") == LATER
    assert "later" in registry.databases()
    registry.service("later").load_main()()
    assert served == ["later"]
    assert registry.service("later").load_cli() is None


@pytest.mark.parametrize(
    ("target", "complaint"),
    [("NOT_A_SERVICE", "not a Service"), ("MISNAMED", "declares 'other' as 'broken'")],
)
def test_a_bad_declaration_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, complaint: str
) -> None:
    _install(tmp_path, "wamesh_broken", {"broken": f"tests.libs.kit.test_registry:{target}"})
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(RegistryError, match=complaint):
        registry.services()


def test_an_unknown_service_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        registry.service("nonesuch")


def test_migrations_and_database_come_together() -> None:
    with pytest.raises(RegistryError, match="together"):
        Service(name="half", main="x:y", database="half")
