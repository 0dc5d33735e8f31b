"""``wamesh queue``, ``wamesh dlq`` and ``wamesh send`` against the real service (the CLI is
synchronous, so each command runs in a thread while the service serves in the test's loop)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from typer.testing import CliRunner, Result

from tests.services.dispatcher.service_testkit import kill_jobs, new_tenant
from wamesh_kit.cli import app
from wamesh_kit.rpc.server import GrpcService


async def run(service: GrpcService, *args: str) -> Result:
    command = [*args, "--target", f"127.0.0.1:{service.port}"]
    return await asyncio.to_thread(lambda: CliRunner().invoke(app, command))


def printed(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


async def test_send_stats_and_the_dead_letters_from_the_terminal(
    service: GrpcService, tenants_admin: Any, dispatcher_dsn: str
) -> None:
    tenant_id, (sender,) = await new_tenant(tenants_admin)
    send = ("send", "--tenant-id", tenant_id, "--to", "whatsapp:+34600111222", "--json")

    sent = printed(await run(service, *send, "--body", "Hola"))
    repeat = printed(await run(service, *send, "--body", "Hola"))
    other = printed(await run(service, *send, "--body", "Adiós", "--key", "order:1:sent"))
    await kill_jobs(dispatcher_dsn, [sent["job"]["id"], other["job"]["id"]], 63018)
    stats = printed(await run(service, "queue", "stats", "--tenant-id", tenant_id, "--json"))
    listed = printed(await run(service, "dlq", "list", "--tenant-id", tenant_id, "--json"))
    shown = printed(
        await run(service, "dlq", "show", sent["job"]["id"], "--tenant-id", tenant_id, "--json")
    )
    retried = printed(
        await run(service, "dlq", "retry", "--tenant-id", tenant_id, sent["job"]["id"], "--json")
    )
    purged = printed(
        await run(service, "dlq", "purge", "--tenant-id", tenant_id, "--yes", "--json")
    )
    refused = await run(service, "send", "--tenant-id", tenant_id, "--to", "12", "--body", "x")

    assert sent["job"]["sender_number"] == sender
    assert sent["job"]["idempotency_key"].startswith("derived:")
    assert repeat["already_existed"]
    assert repeat["job"]["id"] == sent["job"]["id"]
    assert other["job"]["idempotency_key"] == "order:1:sent"
    assert [(s["sender_number"], s["dead"]) for s in stats] == [(sender, "2")]
    assert [j["id"] for j in listed] == [other["job"]["id"], sent["job"]["id"]]
    assert shown["last_error_code"] == 63018
    assert retried == {"retried_count": 1}
    assert purged == {"purged_count": 1}
    assert refused.exit_code == 1
    assert "INVALID_ARGUMENT" in refused.output
    assert "recipient_number" in refused.output
