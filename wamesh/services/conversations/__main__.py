"""``wamesh serve conversations``: the conversation store, configured from WAMESH_* variables."""

from __future__ import annotations

from wamesh.libs.rpc.main import run_grpc_service
from wamesh.services.conversations.app import conversations_service
from wamesh.services.conversations.settings import ConversationsSettings


def main() -> None:
    run_grpc_service(ConversationsSettings(), conversations_service)


if __name__ == "__main__":
    main()
