"""``wamesh serve workers``: the session-worker registry, configured from WAMESH_* variables."""

from __future__ import annotations

from wamesh_kit.rpc.main import run_grpc_service
from wamesh_workers.app import workers_service
from wamesh_workers.settings import WorkersSettings


def main() -> None:
    run_grpc_service(WorkersSettings(), workers_service)


if __name__ == "__main__":
    main()
