"""The contracts: generated code is committed fresh, buf lint passes, every service is there."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor

from tools import protos

REPO_ROOT = Path(__file__).resolve().parents[3]

# DESIGN.md's services, by the generated module that defines each.
SERVICES = {
    "wamesh.tenants.v1.tenants_pb2": "TenantRegistry",
    "wamesh.conversations.v1.conversations_pb2": "ConversationStore",
    "wamesh.orders.v1.orders_pb2": "OrderService",
    "wamesh.dispatch.v1.dispatch_pb2": "Dispatcher",
    "wamesh.workers.v1.workers_pb2": "WorkerRegistry",
}


def _copy_contracts(destination: Path) -> None:
    """A repo-shaped copy of the contracts and their committed generated packages."""
    shutil.copytree(REPO_ROOT / "protos", destination / "protos")
    for relative in protos.generated_files(REPO_ROOT):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / relative, target)


def _generated_module_names() -> list[str]:
    names = []
    for proto in protos.proto_files(REPO_ROOT):
        stem = proto.with_suffix("").as_posix().replace("/", ".")
        names += [f"{stem}_pb2", f"{stem}_pb2_grpc"]
    return names


def test_committed_generated_code_is_fresh() -> None:
    stale = protos.stale_files(REPO_ROOT)
    assert stale == [], f"stale generated code, run `make protos`: {stale}"


def test_a_hand_edited_generated_file_is_named(tmp_path: Path) -> None:
    _copy_contracts(tmp_path)
    edited = "libs/protos/wamesh/tenants/v1/tenants_pb2.py"
    with (tmp_path / edited).open("a") as file:
        file.write("# edited by hand\n")

    assert protos.stale_files(tmp_path) == [edited]
    assert protos.main(["--check", "--root", str(tmp_path)]) == 1


def test_a_changed_proto_names_the_files_it_would_change(tmp_path: Path) -> None:
    _copy_contracts(tmp_path)
    proto = tmp_path / "protos/wamesh/orders/v1/orders.proto"
    proto.write_text(proto.read_text() + "\nmessage AddedLater {\n  string note = 1;\n}\n")

    stale = protos.stale_files(tmp_path)

    assert "libs/protos/wamesh/orders/v1/orders_pb2.py" in stale
    assert "libs/protos/wamesh/orders/v1/orders_pb2.pyi" in stale
    assert all(path.startswith("libs/protos/wamesh/orders/") for path in stale)


def test_missing_and_extra_generated_files_are_named(tmp_path: Path) -> None:
    _copy_contracts(tmp_path)
    (tmp_path / "libs/protos/wamesh/workers/v1/workers_pb2_grpc.pyi").unlink()
    (tmp_path / "libs/protos/wamesh/workers/v1/leftover_pb2.py").write_text("")

    drift = protos.compare(tmp_path)

    assert drift.missing == ["libs/protos/wamesh/workers/v1/workers_pb2_grpc.pyi"]
    assert drift.extra == ["libs/protos/wamesh/workers/v1/leftover_pb2.py"]
    assert drift.changed == []


def test_regenerating_fixes_drift_and_drops_removed_areas(tmp_path: Path) -> None:
    _copy_contracts(tmp_path)
    (tmp_path / "libs/protos/wamesh/common/v1/money_pb2.py").write_text("stale\n")
    shutil.rmtree(tmp_path / "protos/wamesh/events")
    hand_written = tmp_path / "libs/protos/wamesh/__init__.py"
    hand_written.write_text('"""hand-written"""\n')

    protos.regenerate(tmp_path)

    assert protos.stale_files(tmp_path) == []
    assert not (tmp_path / "libs/protos/wamesh/events").exists()
    assert hand_written.exists()


def test_generation_is_deterministic(tmp_path: Path) -> None:
    protos.generate(REPO_ROOT, tmp_path / "first" / protos.OUTPUT_DIR)
    protos.generate(REPO_ROOT, tmp_path / "second" / protos.OUTPUT_DIR)

    first = protos.generated_files(tmp_path / "first")
    assert first
    assert first == protos.generated_files(tmp_path / "second")


def test_buf_lint_passes() -> None:
    buf = Path(sys.executable).parent / "buf"
    result = subprocess.run(
        [str(buf), "lint"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"buf lint failed:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("name", _generated_module_names())
def test_every_generated_module_imports(name: str) -> None:
    importlib.import_module(name)


@pytest.mark.parametrize(("module_name", "service_name"), sorted(SERVICES.items()))
def test_each_designed_service_exists(module_name: str, service_name: str) -> None:
    messages = importlib.import_module(module_name)
    stubs = importlib.import_module(f"{module_name}_grpc")

    service = messages.DESCRIPTOR.services_by_name[service_name]

    assert service.methods
    assert hasattr(stubs, f"{service_name}Stub")
    assert hasattr(stubs, f"add_{service_name}Servicer_to_server")


def _all_services() -> list[ServiceDescriptor]:
    services: list[ServiceDescriptor] = []
    for name in _generated_module_names():
        if name.endswith("_pb2"):
            descriptor: FileDescriptor = importlib.import_module(name).DESCRIPTOR
            services += descriptor.services_by_name.values()
    return services


def test_every_list_rpc_is_keyset_paged() -> None:
    list_methods = [m for s in _all_services() for m in s.methods if m.name.startswith("List")]

    assert len(list_methods) >= 8
    for method in list_methods:
        request = method.input_type.fields_by_name
        response = method.output_type.fields_by_name
        assert "page_size" in request, method.full_name
        assert "page_token" in request, method.full_name
        assert "next_page_token" in response, method.full_name


def test_every_rpc_has_its_own_request_and_response() -> None:
    for service in _all_services():
        for method in service.methods:
            assert method.input_type.name == f"{method.name}Request", method.full_name
            assert method.output_type.name == f"{method.name}Response", method.full_name
