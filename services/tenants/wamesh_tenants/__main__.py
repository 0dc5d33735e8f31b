"""``wamesh serve tenants``: the tenant registry, configured from WAMESH_* variables."""

from __future__ import annotations

from wamesh_kit.rpc.main import run_grpc_service
from wamesh_tenants.app import tenants_service
from wamesh_tenants.settings import TenantsSettings


def main() -> None:
    run_grpc_service(TenantsSettings(), tenants_service)


if __name__ == "__main__":
    main()
