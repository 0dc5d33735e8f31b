"""TenantRegistry's tenant RPCs over a real socket: create, read, list, update, status, errors."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from tests.services.tenants.tenants_testkit import assert_refused, create_tenant, unique_id
from wamesh.common.v1.money_pb2 import Money
from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh_kit.rpc.auth import mint_tenant_token
from wamesh_kit.settings import DEV_JWT_SECRET

ACTIVE, SUSPENDED = pb.TENANT_STATUS_ACTIVE, pb.TENANT_STATUS_SUSPENDED


def menu_item(**fields: Any) -> pb.MenuItem:
    values: dict[str, Any] = {
        "id": "paella",
        "name": "Paella",
        "price": Money(currency_code="EUR", units=12, nanos=500_000_000),
        "available": True,
    }
    values.update(fields)
    return pb.MenuItem(**{k: v for k, v in values.items() if v is not None})


async def test_create_fills_defaults_and_get_returns_the_same_tenant(admin: Any) -> None:
    tenant = await create_tenant(admin, support_contact="hola@casapepe.es")

    assert tenant.status == ACTIVE
    assert tenant.version == 1
    assert tenant.time_zone == "UTC"
    assert tenant.default_language == "en"
    assert tenant.limits.outbound_messages_per_second == 80.0
    assert tenant.limits.max_send_attempts == 5
    assert tenant.limits.recipient_min_interval == Duration(seconds=2)
    assert tenant.limits.inbound_messages_per_minute == 20
    assert tenant.created_at.seconds > 0
    fetched = (await admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant.id))).tenant
    assert fetched == tenant


async def test_create_stores_limits_and_bot_settings(admin: Any) -> None:
    bot = pb.BotSettings(
        menu=[menu_item(), menu_item(id="tortilla", name="Tortilla")],
        greeting="¡Hola!",
        promo_text="2x1 los martes",
        apology_text="Lo sentimos",
        languages=["es", "en"],
    )
    limits = pb.Limits(
        outbound_messages_per_second=5,
        recipient_min_interval=Duration(seconds=3),
        inbound_messages_per_minute=30,
        max_send_attempts=8,
    )
    tenant = await create_tenant(
        admin, time_zone="Europe/Madrid", default_language="es", limits=limits, bot=bot
    )

    fetched = (await admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant.id))).tenant
    assert fetched.bot == bot
    assert fetched.limits == limits
    assert fetched.time_zone == "Europe/Madrid"


async def test_staff_numbers_are_stored_in_e164(admin: Any) -> None:
    bot = pb.BotSettings(staff_numbers=["whatsapp:+34 600 111 222", "+14155238886"])

    tenant = await create_tenant(admin, bot=bot)

    fetched = (await admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant.id))).tenant
    assert list(fetched.bot.staff_numbers) == ["+34600111222", "+14155238886"]


async def test_create_is_idempotent_on_the_request_id(admin: Any) -> None:
    request = pb.CreateTenantRequest(
        request_id=uuid.uuid4().hex, tenant_id=unique_id(), display_name="Once"
    )
    first = await admin.CreateTenant(request)
    again = await admin.CreateTenant(request)
    concurrent = await asyncio.gather(*(admin.CreateTenant(request) for _ in range(5)))

    assert not first.already_existed
    assert again.already_existed
    assert again.tenant == first.tenant
    assert all(r.already_existed and r.tenant.id == first.tenant.id for r in concurrent)


async def test_create_without_an_id_generates_one(admin: Any) -> None:
    response = await admin.CreateTenant(
        pb.CreateTenantRequest(request_id=uuid.uuid4().hex, display_name="Anon")
    )
    assert response.tenant.id.startswith("t-")


async def test_a_taken_tenant_id_is_already_exists(admin: Any) -> None:
    tenant = await create_tenant(admin)
    await assert_refused(
        create_tenant(admin, tenant_id=tenant.id), grpc.StatusCode.ALREADY_EXISTS, "tenant_id"
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"request_id": ""}, "request_id"),
        ({"tenant_id": "Not_Valid"}, "tenant_id"),
        ({"display_name": "  "}, "display_name"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"default_language": "not a tag"}, "default_language"),
        (
            {"limits": pb.Limits(outbound_messages_per_second=-1)},
            "limits.outbound_messages_per_second",
        ),
        (
            {"limits": pb.Limits(max_send_attempts=21)},
            "limits.max_send_attempts",
        ),
        (
            {"limits": pb.Limits(recipient_min_interval=Duration(seconds=-2))},
            "limits.recipient_min_interval",
        ),
        (
            {"limits": pb.Limits(inbound_messages_per_minute=-5)},
            "limits.inbound_messages_per_minute",
        ),
        ({"bot": pb.BotSettings(menu=[menu_item(price=None)])}, "bot.menu[0].price"),
        (
            {"bot": pb.BotSettings(menu=[menu_item(), menu_item(id="b", price=Money(units=1))])},
            "bot.menu[1].price.currency_code",
        ),
        (
            {"bot": pb.BotSettings(menu=[menu_item(price=Money(currency_code="EUR", units=-1))])},
            "bot.menu[0].price",
        ),
        ({"bot": pb.BotSettings(menu=[menu_item(), menu_item()])}, "bot.menu[1].id"),
        ({"bot": pb.BotSettings(menu=[menu_item(name="")])}, "bot.menu[0].name"),
        ({"bot": pb.BotSettings(greeting="x" * 1601)}, "bot.greeting"),
        ({"bot": pb.BotSettings(languages=["es", "??"])}, "bot.languages[1]"),
        ({"bot": pb.BotSettings(staff_numbers=["+34600111222", "6001"])}, "bot.staff_numbers[1]"),
        ({"bot": pb.BotSettings(staff_numbers=[""])}, "bot.staff_numbers[0]"),
        (
            {"bot": pb.BotSettings(staff_numbers=["+34600111222", "whatsapp:+34 600 111 222"])},
            "bot.staff_numbers[1]",
        ),
    ],
)
async def test_invalid_tenants_are_refused_naming_the_field(
    admin: Any, fields: dict[str, Any], field: str
) -> None:
    values: dict[str, Any] = {
        "request_id": uuid.uuid4().hex,
        "tenant_id": unique_id(),
        "display_name": "Bad",
        **fields,
    }
    await assert_refused(
        admin.CreateTenant(pb.CreateTenantRequest(**values)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )
    if values["tenant_id"] and fields.get("tenant_id") is None:
        await assert_refused(
            admin.GetTenant(pb.GetTenantRequest(tenant_id=values["tenant_id"])),
            grpc.StatusCode.NOT_FOUND,
        )


async def test_unknown_tenant_is_not_found_everywhere(admin: Any) -> None:
    missing = unique_id("missing")
    calls = [
        admin.GetTenant(pb.GetTenantRequest(tenant_id=missing)),
        admin.UpdateTenant(
            pb.UpdateTenantRequest(tenant_id=missing, expected_version=1, display_name="x")
        ),
        admin.SetTenantStatus(pb.SetTenantStatusRequest(tenant_id=missing, status=SUSPENDED)),
    ]
    for call in calls:
        await assert_refused(call, grpc.StatusCode.NOT_FOUND, "tenant_id")


async def test_update_changes_only_the_given_fields_and_bumps_the_version(admin: Any) -> None:
    tenant = await create_tenant(admin, support_contact="old@example.com")
    updated = (
        await admin.UpdateTenant(
            pb.UpdateTenantRequest(
                tenant_id=tenant.id,
                expected_version=tenant.version,
                display_name="Casa Pepe 2",
                limits=pb.Limits(inbound_messages_per_minute=7),
            )
        )
    ).tenant

    assert updated.version == tenant.version + 1
    assert updated.display_name == "Casa Pepe 2"
    assert updated.support_contact == "old@example.com"
    assert updated.limits.inbound_messages_per_minute == 7
    assert updated.limits.recipient_min_interval == Duration(seconds=2)
    assert updated.updated_at.ToDatetime() >= tenant.updated_at.ToDatetime()


async def test_a_stale_version_is_failed_precondition(admin: Any) -> None:
    tenant = await create_tenant(admin)
    await admin.UpdateTenant(
        pb.UpdateTenantRequest(tenant_id=tenant.id, expected_version=1, display_name="v2")
    )
    await assert_refused(
        admin.UpdateTenant(
            pb.UpdateTenantRequest(tenant_id=tenant.id, expected_version=1, display_name="v2'")
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "expected_version",
    )
    current = (await admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant.id))).tenant
    assert current.display_name == "v2"


async def test_two_concurrent_updates_from_one_version_exactly_one_wins(admin: Any) -> None:
    tenant = await create_tenant(admin)
    names = [f"writer {i}" for i in range(8)]
    results = await asyncio.gather(
        *(
            admin.UpdateTenant(
                pb.UpdateTenantRequest(
                    tenant_id=tenant.id, expected_version=tenant.version, display_name=name
                )
            )
            for name in names
        ),
        return_exceptions=True,
    )

    winners = [r for r in results if isinstance(r, pb.UpdateTenantResponse)]
    losers = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(winners) == 1
    assert len(losers) == len(names) - 1
    assert {e.code() for e in losers} == {grpc.StatusCode.FAILED_PRECONDITION}
    current = (await admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant.id))).tenant
    assert current.display_name == winners[0].tenant.display_name
    assert current.version == tenant.version + 1


async def test_update_validates_and_needs_a_version(admin: Any) -> None:
    tenant = await create_tenant(admin)
    for request, field in [
        (pb.UpdateTenantRequest(tenant_id=tenant.id, display_name="x"), "expected_version"),
        (
            pb.UpdateTenantRequest(tenant_id=tenant.id, expected_version=1, time_zone="Nowhere"),
            "time_zone",
        ),
        (
            pb.UpdateTenantRequest(
                tenant_id=tenant.id,
                expected_version=1,
                bot=pb.BotSettings(menu=[menu_item(price=None)]),
            ),
            "bot.menu[0].price",
        ),
    ]:
        await assert_refused(admin.UpdateTenant(request), grpc.StatusCode.INVALID_ARGUMENT, field)
    unchanged = (await admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant.id))).tenant
    assert unchanged == tenant


async def test_suspend_and_activate(admin: Any) -> None:
    tenant = await create_tenant(admin)
    suspended = (
        await admin.SetTenantStatus(
            pb.SetTenantStatusRequest(tenant_id=tenant.id, status=SUSPENDED)
        )
    ).tenant
    repeat = (
        await admin.SetTenantStatus(
            pb.SetTenantStatusRequest(tenant_id=tenant.id, status=SUSPENDED)
        )
    ).tenant
    active = (
        await admin.SetTenantStatus(pb.SetTenantStatusRequest(tenant_id=tenant.id, status=ACTIVE))
    ).tenant

    assert suspended.status == SUSPENDED
    assert suspended.version == tenant.version + 1
    assert repeat.version == suspended.version, "a repeat changed the tenant"
    assert active.status == ACTIVE
    assert active.version == suspended.version + 1
    await assert_refused(
        admin.SetTenantStatus(
            pb.SetTenantStatusRequest(tenant_id=tenant.id, status=pb.TENANT_STATUS_UNSPECIFIED)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "status",
    )


async def test_list_pages_by_id_and_filters_by_status(admin: Any) -> None:
    prefix = f"list-{uuid.uuid4().hex[:6]}"
    ids = [f"{prefix}-{i:02d}" for i in range(7)]
    for tenant_id in ids:
        await create_tenant(admin, tenant_id=tenant_id)
    for tenant_id in ids[::3]:
        await admin.SetTenantStatus(
            pb.SetTenantStatusRequest(tenant_id=tenant_id, status=SUSPENDED)
        )

    async def all_pages(status: pb.TenantStatus.ValueType) -> list[str]:
        seen: list[str] = []
        token = ""
        while True:
            page = await admin.ListTenants(
                pb.ListTenantsRequest(page_size=2, page_token=token, status=status)
            )
            assert len(page.tenants) <= 2
            seen += [t.id for t in page.tenants if t.id.startswith(prefix)]
            token = page.next_page_token
            if not token:
                return seen

    assert await all_pages(pb.TENANT_STATUS_UNSPECIFIED) == ids
    assert await all_pages(SUSPENDED) == ids[::3]
    assert await all_pages(ACTIVE) == [i for i in ids if i not in ids[::3]]


async def test_list_refuses_bad_paging(admin: Any) -> None:
    for request, field in [
        (pb.ListTenantsRequest(page_size=-1), "page_size"),
        (pb.ListTenantsRequest(page_token="%%%not-ours"), "page_token"),
        (pb.ListTenantsRequest(status=99), "status"),  # type: ignore[arg-type]
    ]:
        await assert_refused(admin.ListTenants(request), grpc.StatusCode.INVALID_ARGUMENT, field)


async def test_a_page_token_pages_only_the_filter_that_issued_it(admin: Any) -> None:
    prefix = f"bound-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        await create_tenant(admin, tenant_id=f"{prefix}-{i}")
    first = await admin.ListTenants(pb.ListTenantsRequest(page_size=1, status=ACTIVE))
    assert first.next_page_token

    other_filter = pb.ListTenantsRequest(page_token=first.next_page_token, status=SUSPENDED)
    await assert_refused(
        admin.ListTenants(other_filter), grpc.StatusCode.INVALID_ARGUMENT, "page_token"
    )


async def test_admin_rpcs_need_the_admin_token(connect: Any, admin: Any) -> None:
    tenant = await create_tenant(admin)
    anonymous, internal = connect(None), connect("wamesh-dev-internal-token")
    tenant_token = connect(mint_tenant_token(DEV_JWT_SECRET, tenant.id, ttl=timedelta(hours=1)))
    request = pb.GetTenantRequest(tenant_id=tenant.id)

    await assert_refused(anonymous.GetTenant(request), grpc.StatusCode.UNAUTHENTICATED)
    await assert_refused(connect("wrong-token").GetTenant(request), grpc.StatusCode.UNAUTHENTICATED)
    await assert_refused(tenant_token.GetTenant(request), grpc.StatusCode.PERMISSION_DENIED)
    # Services read a tenant's settings (the dispatcher its senders and limits).
    assert (await internal.GetTenant(request)).tenant.id == tenant.id
    await assert_refused(
        internal.UpdateTenant(pb.UpdateTenantRequest(tenant_id=tenant.id)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
