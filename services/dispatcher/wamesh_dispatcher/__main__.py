"""``wamesh serve dispatcher``: the outbound dispatcher, configured from WAMESH_* variables."""

from __future__ import annotations

from wamesh_dispatcher.app import dispatcher_service
from wamesh_dispatcher.settings import DispatcherSettings
from wamesh_kit.rpc.main import run_grpc_service


def main() -> None:
    run_grpc_service(DispatcherSettings(), dispatcher_service)


if __name__ == "__main__":
    main()
