"""Sender numbers and ResolveNumber: uniqueness, moves, the Redis route cache, invalidations."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from tests.services.tenants.tenants_testkit import (
    ACCOUNT_SID,
    assert_refused,
    create_tenant,
    make_settings,
    unique_number,
)
from wamesh.tenants.v1 import tenants_pb2 as pb
from wamesh.tenants.v1 import tenants_pb2_grpc
from wamesh_kit.keys import number_route_key
from wamesh_kit.localinfra import free_port
from wamesh_kit.rpc.client import make_channel
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN
from wamesh_kit.tenant_invalidations import InvalidationListener
from wamesh_tenants.app import tenants_service
from wamesh_tenants.routes import RouteCache
from wamesh_tenants.settings import TenantsSettings
from wamesh_tenants.store import Change

INVALID = grpc.StatusCode.INVALID_ARGUMENT
SERVICE_SID = "MG" + "ab" * 16


async def add_number(admin: Any, tenant_id: str, number: str, **fields: Any) -> pb.SenderNumber:
    response = await admin.AddSenderNumber(
        pb.AddSenderNumberRequest(tenant_id=tenant_id, number=number, **fields)
    )
    sender: pb.SenderNumber = response.sender_number
    return sender


async def resolve(stub: Any, number: str) -> pb.ResolveNumberResponse:
    response: pb.ResolveNumberResponse = await stub.ResolveNumber(
        pb.ResolveNumberRequest(number=number)
    )
    return response


async def test_every_spelling_of_a_number_is_one_number(admin: Any, internal: Any) -> None:
    tenant = await create_tenant(admin)
    digits = unique_number()[1:]
    spaced = f" +{digits[0]} {digits[1:4]} {digits[4:7]} {digits[7:]} "

    sender = await add_number(admin, tenant.id, f"whatsapp:+{digits}")
    assert sender.number == f"+{digits}"
    for spelling in (f"+{digits}", f"whatsapp:+{digits}", spaced):
        route = await resolve(internal, spelling)
        assert route.tenant_id == tenant.id
        assert route.sender.number == f"+{digits}"
    again = await add_number(admin, tenant.id, spaced)
    assert again == sender, "adding a number its tenant already has is a no-op"


async def test_resolve_answers_tenant_status_and_sender_settings(admin: Any, internal: Any) -> None:
    tenant = await create_tenant(admin, limits=pb.Limits(inbound_messages_per_minute=9))
    number = unique_number()
    await add_number(admin, tenant.id, number, messaging_service_sid=SERVICE_SID)
    await admin.SetCredentials(
        pb.SetCredentialsRequest(
            tenant_id=tenant.id,
            credentials=pb.TwilioCredentials(account_sid=ACCOUNT_SID, auth_token="tok"),
        )
    )

    route = await resolve(internal, number)

    assert route.tenant_id == tenant.id
    assert route.status == pb.TENANT_STATUS_ACTIVE
    assert route.sender.messaging_service_sid == SERVICE_SID
    assert route.limits.inbound_messages_per_minute == 9
    assert route.account_sid == ACCOUNT_SID
    assert route.tenant_version == tenant.version + 2
    assert "tok" not in str(route)


async def test_a_number_belongs_to_one_tenant_and_the_owner_is_named(admin: Any) -> None:
    owner, other = await create_tenant(admin), await create_tenant(admin)
    number = unique_number()
    await add_number(admin, owner.id, number)

    details = await assert_refused(
        admin.AddSenderNumber(pb.AddSenderNumberRequest(tenant_id=other.id, number=number)),
        grpc.StatusCode.ALREADY_EXISTS,
        "number",
    )
    assert owner.id in details


async def test_two_tenants_racing_for_one_number_one_gets_it(admin: Any) -> None:
    tenants = [await create_tenant(admin) for _ in range(4)]
    number = unique_number()
    results = await asyncio.gather(
        *(add_number(admin, t.id, number) for t in tenants), return_exceptions=True
    )
    assert sum(isinstance(r, pb.SenderNumber) for r in results) == 1
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert {e.code() for e in errors} == {grpc.StatusCode.ALREADY_EXISTS}


async def test_malformed_and_unknown_numbers(admin: Any, internal: Any) -> None:
    tenant = await create_tenant(admin)
    for bad in ("", "whatsapp:", "+0123456", "14155238886", "+1 415 CALL NOW", "+1" * 12):
        await assert_refused(
            admin.AddSenderNumber(pb.AddSenderNumberRequest(tenant_id=tenant.id, number=bad)),
            INVALID,
            "number",
        )
        await assert_refused(internal.ResolveNumber(pb.ResolveNumberRequest(number=bad)), INVALID)
    await assert_refused(
        admin.AddSenderNumber(
            pb.AddSenderNumberRequest(
                tenant_id=tenant.id, number=unique_number(), messaging_service_sid="MG123"
            )
        ),
        INVALID,
        "messaging_service_sid",
    )
    await assert_refused(
        admin.AddSenderNumber(
            pb.AddSenderNumberRequest(tenant_id="no-such-tenant", number=unique_number())
        ),
        grpc.StatusCode.NOT_FOUND,
        "tenant_id",
    )
    await assert_refused(
        internal.ResolveNumber(pb.ResolveNumberRequest(number=unique_number())),
        grpc.StatusCode.NOT_FOUND,
        "number",
    )
    await assert_refused(
        admin.RemoveSenderNumber(
            pb.RemoveSenderNumberRequest(tenant_id=tenant.id, number=unique_number())
        ),
        grpc.StatusCode.NOT_FOUND,
        "number",
    )
    assert not (
        await admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant.id))
    ).tenant.sender_numbers


async def test_remove_number_stops_routing_it(admin: Any, internal: Any) -> None:
    tenant = await create_tenant(admin)
    number = unique_number()
    await add_number(admin, tenant.id, number)
    await resolve(internal, number)  # now cached

    await admin.RemoveSenderNumber(pb.RemoveSenderNumberRequest(tenant_id=tenant.id, number=number))

    await assert_refused(
        internal.ResolveNumber(pb.ResolveNumberRequest(number=number)), grpc.StatusCode.NOT_FOUND
    )


async def test_moving_a_number_reroutes_it_at_once(admin: Any, internal: Any) -> None:
    source, target = await create_tenant(admin), await create_tenant(admin)
    number = unique_number()
    await add_number(admin, source.id, number)
    assert (await resolve(internal, number)).tenant_id == source.id  # cached for source

    moved = await admin.MoveSenderNumber(
        pb.MoveSenderNumberRequest(number=number, from_tenant_id=source.id, to_tenant_id=target.id)
    )

    assert moved.sender_number.number == number
    assert (await resolve(internal, number)).tenant_id == target.id
    after = (await admin.GetTenant(pb.GetTenantRequest(tenant_id=source.id))).tenant
    assert not after.sender_numbers
    await assert_refused(
        admin.MoveSenderNumber(
            pb.MoveSenderNumberRequest(
                number=number, from_tenant_id=source.id, to_tenant_id=source.id
            )
        ),
        INVALID,
        "to_tenant_id",
    )
    stranger = await create_tenant(admin)
    await assert_refused(
        admin.MoveSenderNumber(
            pb.MoveSenderNumberRequest(
                number=number, from_tenant_id=source.id, to_tenant_id=stranger.id
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "from_tenant_id",
    )


async def test_suspending_a_tenant_shows_in_resolve_at_once(admin: Any, internal: Any) -> None:
    tenant = await create_tenant(admin)
    number = unique_number()
    await add_number(admin, tenant.id, number)
    assert (await resolve(internal, number)).status == pb.TENANT_STATUS_ACTIVE

    await admin.SetTenantStatus(
        pb.SetTenantStatusRequest(tenant_id=tenant.id, status=pb.TENANT_STATUS_SUSPENDED)
    )

    assert (await resolve(internal, number)).status == pb.TENANT_STATUS_SUSPENDED


async def test_resolve_is_served_from_redis_once_cached(
    admin: Any, internal: Any, redis_client: aioredis.Redis, settings: TenantsSettings
) -> None:
    tenant = await create_tenant(admin)
    number = unique_number()
    await add_number(admin, tenant.id, number)
    assert await redis_client.get(number_route_key(number)) is None

    first = await resolve(internal, number)

    cached = await redis_client.get(number_route_key(number))
    assert isinstance(cached, bytes)
    assert pb.ResolveNumberResponse.FromString(cached) == first
    ttl = await redis_client.ttl(number_route_key(number))
    assert 0 < ttl <= settings.route_cache_ttl_s
    # A route planted in the cache is what ResolveNumber answers: proof it reads Redis first.
    planted = pb.ResolveNumberResponse(tenant_id="planted-by-test", tenant_version=99)
    await redis_client.set(number_route_key(number), planted.SerializeToString())
    assert (await resolve(internal, number)).tenant_id == "planted-by-test"


async def test_a_slow_reader_cannot_put_back_a_route_that_was_invalidated(
    admin: Any, internal: Any, redis_client: aioredis.Redis, service: Any
) -> None:
    tenant = await create_tenant(admin)
    number = unique_number()
    await add_number(admin, tenant.id, number)
    routes = RouteCache(redis_client, ttl_s=60)
    lookup = await routes.get(number)  # a reader misses and reads Postgres...
    assert lookup.route is None
    assert lookup.generation is not None
    stale = pb.ResolveNumberResponse(tenant_id=tenant.id, tenant_version=1)
    await routes.invalidate(  # ...a write commits and invalidates meanwhile...
        Change(tenant, (number,)), pb.TENANT_INVALIDATION_REASON_ROUTE
    )

    assert not await routes.put(number, stale, lookup.generation)  # ...its fill is refused
    assert await redis_client.get(number_route_key(number)) is None


async def test_a_second_client_sees_the_invalidation_within_100_ms(
    admin: Any, internal: Any, redis_url: str
) -> None:
    tenant = await create_tenant(admin)
    number = unique_number()
    await add_number(admin, tenant.id, number)
    received: list[tuple[float, pb.TenantInvalidation]] = []
    resets: list[float] = []
    listener_redis = aioredis.Redis.from_url(redis_url)
    try:
        async with InvalidationListener(
            listener_redis,
            lambda inv: received.append((time.monotonic(), inv)),
            lambda: resets.append(time.monotonic()),
        ):
            assert resets, "a listener starts by dropping its cache"
            written_at = time.monotonic()
            updated = await admin.UpdateTenant(
                pb.UpdateTenantRequest(
                    tenant_id=tenant.id,
                    expected_version=tenant.version + 1,
                    limits=pb.Limits(inbound_messages_per_minute=3),
                )
            )
            # Poll finely so the measured delay is the invalidation's, not the loop's.
            while not received and time.monotonic() < written_at + 1:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
    finally:
        await listener_redis.aclose()

    assert received, "no invalidation arrived"
    arrived_at, invalidation = received[0]
    assert arrived_at - written_at < 0.1
    assert invalidation.tenant_id == tenant.id
    assert list(invalidation.numbers) == [number]
    assert invalidation.tenant_version == updated.tenant.version
    assert invalidation.reason == pb.TENANT_INVALIDATION_REASON_SETTINGS


async def test_each_routing_write_publishes_an_invalidation(admin: Any, redis_url: str) -> None:
    source, target = await create_tenant(admin), await create_tenant(admin)
    number = unique_number()
    received: list[pb.TenantInvalidation] = []
    listener_redis = aioredis.Redis.from_url(redis_url)
    try:
        async with InvalidationListener(listener_redis, received.append):
            await add_number(admin, source.id, number)
            await admin.MoveSenderNumber(
                pb.MoveSenderNumberRequest(
                    number=number, from_tenant_id=source.id, to_tenant_id=target.id
                )
            )
            await admin.SetCredentials(
                pb.SetCredentialsRequest(
                    tenant_id=target.id,
                    credentials=pb.TwilioCredentials(account_sid=ACCOUNT_SID, auth_token="t"),
                )
            )
            await admin.SetTenantStatus(
                pb.SetTenantStatusRequest(tenant_id=target.id, status=pb.TENANT_STATUS_SUSPENDED)
            )
            await admin.RemoveSenderNumber(
                pb.RemoveSenderNumberRequest(tenant_id=target.id, number=number)
            )
            for _ in range(200):
                if len(received) >= 5:
                    break
                await asyncio.sleep(0.01)
    finally:
        await listener_redis.aclose()

    reasons = [(i.tenant_id, i.reason) for i in received]
    assert reasons == [
        (source.id, pb.TENANT_INVALIDATION_REASON_ROUTE),
        (target.id, pb.TENANT_INVALIDATION_REASON_ROUTE),
        (target.id, pb.TENANT_INVALIDATION_REASON_CREDENTIALS),
        (target.id, pb.TENANT_INVALIDATION_REASON_STATUS),
        (target.id, pb.TENANT_INVALIDATION_REASON_ROUTE),
    ]
    assert all(list(i.numbers) == [number] for i in received)


async def test_with_redis_down_resolve_answers_from_postgres(admin: Any, tenants_dsn: str) -> None:
    tenant = await create_tenant(admin)
    number = unique_number()
    await add_number(admin, tenant.id, number)
    nothing_listens = f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(tenants_dsn, nothing_listens)

    async with tenants_service(settings, registry=CollectorRegistry()) as server:
        target = f"127.0.0.1:{server.port}"
        async with (
            make_channel(target, token=DEV_INTERNAL_TOKEN) as internal_channel,
            make_channel(target, token=DEV_ADMIN_TOKEN) as admin_channel,
        ):
            no_redis_internal = tenants_pb2_grpc.TenantRegistryStub(internal_channel)
            no_redis_admin = tenants_pb2_grpc.TenantRegistryStub(admin_channel)
            assert (await resolve(no_redis_internal, number)).tenant_id == tenant.id
            # Writes commit too; only the cache invalidation is skipped (the TTL heals it).
            moved_to = await create_tenant(no_redis_admin)
            await no_redis_admin.MoveSenderNumber(
                pb.MoveSenderNumberRequest(
                    number=number, from_tenant_id=tenant.id, to_tenant_id=moved_to.id
                )
            )
            assert (await resolve(no_redis_internal, number)).tenant_id == moved_to.id


async def test_resolve_takes_the_internal_identity_or_an_admin(connect: Any, admin: Any) -> None:
    tenant = await create_tenant(admin)
    number = unique_number()
    await add_number(admin, tenant.id, number)
    request = pb.ResolveNumberRequest(number=number)

    assert (await admin.ResolveNumber(request)).tenant_id == tenant.id
    await assert_refused(connect(None).ResolveNumber(request), grpc.StatusCode.UNAUTHENTICATED)
