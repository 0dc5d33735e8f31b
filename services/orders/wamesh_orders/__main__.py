"""``wamesh serve orders``: the orders service, configured from WAMESH_* variables."""

from __future__ import annotations

from wamesh_kit.rpc.main import run_grpc_service
from wamesh_orders.app import orders_service
from wamesh_orders.settings import OrdersSettings


def main() -> None:
    run_grpc_service(OrdersSettings(), orders_service)


if __name__ == "__main__":
    main()
