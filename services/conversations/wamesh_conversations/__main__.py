"""``wamesh serve conversations``: the conversation store, configured from WAMESH_* variables."""

from __future__ import annotations

from wamesh_conversations.app import conversations_service
from wamesh_conversations.settings import ConversationsSettings
from wamesh_kit.rpc.main import run_grpc_service


def main() -> None:
    run_grpc_service(ConversationsSettings(), conversations_service)


if __name__ == "__main__":
    main()
