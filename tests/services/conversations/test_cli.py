"""``wamesh conversations ...`` run as a real process against the service on a real socket."""

from __future__ import annotations

import json
from typing import Any

from tests.services.conversations.conversations_testkit import inbound, number, tenant
from wamesh_kit.rpc.server import GrpcService


async def test_list_and_show_a_tenants_conversations(
    service: GrpcService, internal: Any, wamesh_cli: Any
) -> None:
    env = {"WAMESH_CONVERSATIONS_TARGET": f"127.0.0.1:{service.port}"}
    tenant_id, customer, sender = tenant(), number(), number()
    first = await internal.RecordInbound(inbound(tenant_id, customer, sender, body="una paella"))
    await internal.RecordInbound(inbound(tenant_id, customer, sender, body="y dos cañas"))
    conversation_id = first.conversation.id

    code, out, err = await wamesh_cli("conversations", "list", tenant_id, "--json", env=env)
    assert code == 0, err
    listed = json.loads(out)["conversations"]
    assert [c["id"] for c in listed] == [conversation_id]
    assert listed[0]["unread_count"] == 2

    code, out, err = await wamesh_cli(
        "conversations", "show", tenant_id, conversation_id, "--json", env=env
    )
    assert code == 0, err
    shown = json.loads(out)
    assert [m["body"] for m in shown["messages"]] == ["y dos cañas", "una paella"]

    code, out, err = await wamesh_cli("conversations", "show", tenant_id, conversation_id, env=env)
    assert code == 0, err
    assert "una paella" in out
    assert customer in out

    code, _, err = await wamesh_cli("conversations", "show", tenant_id, "not-an-id", env=env)
    assert code == 1
    assert "INVALID_ARGUMENT" in err
    assert "conversation_id" in err
