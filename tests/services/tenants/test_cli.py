"""``wamesh tenants ...`` run as a real process against the service on a real socket."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from tests.services.tenants.tenants_testkit import ACCOUNT_SID, KEY_1, unique_id, unique_number
from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh_kit.rpc.server import GrpcService
from wamesh_tenants.settings import TenantsSettings


async def test_the_admin_commands_drive_the_service(
    service: GrpcService, internal: Any, wamesh_cli: Any
) -> None:
    env = {"WAMESH_TENANTS_TARGET": f"127.0.0.1:{service.port}"}
    tenant_id, number = unique_id("cli"), unique_number()

    async def ok(*args: str, extra_env: dict[str, str] | None = None) -> str:
        code, out, err = await wamesh_cli("tenants", *args, env={**env, **(extra_env or {})})
        assert code == 0, err
        return str(out)

    created = json.loads(await ok("create", "--id", tenant_id, "--name", "Tacos Ana", "--json"))
    assert created["id"] == tenant_id
    assert created["limits"]["inbound_messages_per_minute"] == 20
    await ok("add-number", tenant_id, f"whatsapp:{number}")
    await ok(
        "set-credentials",
        tenant_id,
        "--account-sid",
        ACCOUNT_SID,
        extra_env={"WAMESH_TWILIO_AUTH_TOKEN": "cli-secret-token"},
    )
    updated = json.loads(
        await ok(
            "update", tenant_id, "--inbound-per-minute", "5", "--max-send-attempts", "9", "--json"
        )
    )
    assert updated["limits"]["inbound_messages_per_minute"] == 5
    assert updated["limits"]["max_send_attempts"] == 9
    assert updated["limits"]["recipient_min_interval"] == "2s", "update dropped other limits"
    suspended = json.loads(await ok("suspend", tenant_id, "--json"))
    assert suspended["status"] == "TENANT_STATUS_SUSPENDED"
    table = await ok("get", tenant_id)
    assert tenant_id in table
    assert number in table
    assert "suspended" in table
    assert "cli-secret-token" not in table
    listed = json.loads(await ok("list", "--status", "suspended", "--page-size", "500", "--json"))
    assert tenant_id in [t["id"] for t in listed["tenants"]]

    credentials = await internal.GetCredentials(pb.GetCredentialsRequest(tenant_id=tenant_id))
    assert credentials.credentials.auth_token == "cli-secret-token"


async def test_refusals_exit_non_zero_naming_status_and_field(
    service: GrpcService, wamesh_cli: Any
) -> None:
    env = {"WAMESH_TENANTS_TARGET": f"127.0.0.1:{service.port}"}

    code, _, err = await wamesh_cli("tenants", "add-number", unique_id(), "not-a-number", env=env)
    assert code == 1
    assert "INVALID_ARGUMENT" in err
    assert "number:" in err
    code, _, err = await wamesh_cli(
        "tenants", "create", "--name", "Too Keen", "--max-send-attempts", "21", env=env
    )
    assert code == 1
    assert "INVALID_ARGUMENT" in err
    assert "limits.max_send_attempts" in err
    code, _, err = await wamesh_cli("tenants", "get", unique_id("nobody"), env=env)
    assert code == 1
    assert "NOT_FOUND" in err
    code, _, err = await wamesh_cli(
        "tenants", "get", "x-tenant", env={**env, "WAMESH_ADMIN_TOKEN": "wrong"}
    )
    assert code == 1
    assert "UNAUTHENTICATED" in err


async def test_rotate_key_reseals_under_the_new_key(
    service: GrpcService, admin: Any, internal: Any, settings: TenantsSettings, wamesh_cli: Any
) -> None:
    tenant = (
        await admin.CreateTenant(
            pb.CreateTenantRequest(request_id=unique_id(), display_name="Rotating")
        )
    ).tenant
    await admin.SetCredentials(
        pb.SetCredentialsRequest(
            tenant_id=tenant.id,
            credentials=pb.TwilioCredentials(account_sid=ACCOUNT_SID, auth_token="before-rotation"),
        )
    )
    key_2 = "k2:" + base64.b64encode(os.urandom(32)).decode()
    env = {
        "WAMESH_DATABASE_URL": settings.database_url,
        "WAMESH_CREDENTIAL_KEYS": f"{KEY_1},{key_2}",
        "WAMESH_CREDENTIAL_ACTIVE_KEY": "k2",
    }

    code, out, err = await wamesh_cli("tenants", "rotate-key", "--json", env=env)

    assert code == 0, err
    report = json.loads(out)
    assert report["active_key"] == "k2"
    assert report["resealed"] >= 1
    code, out, err = await wamesh_cli("tenants", "rotate-key", "--json", env=env)
    assert json.loads(out)["resealed"] == 0
    # The running service still holds the old key only: it can no longer open the new seal,
    # which proves the row really changed key (the services get the new key before rotating).
    code, _, err = await wamesh_cli(
        "tenants",
        "rotate-key",
        env={**env, "WAMESH_CREDENTIAL_KEYS": KEY_1, "WAMESH_CREDENTIAL_ACTIVE_KEY": "k1"},
    )
    assert code == 1
    assert "k2" in err
    assert "before-rotation" not in err
