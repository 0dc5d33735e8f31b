"""The dispatcher as it is served: Enqueue over gRPC, the replica placed on the sender by the
real workers registry, the tenant's credentials from the real tenants service, the message
recorded in the real conversation store before it is sent and given its MessageSid after,
and the message at the sandbox, signed for with the tenant's account."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.services.conversations.conversations_testkit import (
    make_settings as conversations_settings,
)
from tests.services.dispatcher.dispatcher_testkit import sandbox_messages
from tests.services.dispatcher.runner_testkit import registry, registry_dsn
from tests.services.dispatcher.service_testkit import make_settings
from tests.services.tenants.tenants_testkit import create_tenant
from tests.tools.sandbox.sandbox_testkit import ACCOUNT, SENDER, Running
from wamesh.conversations.v1 import conversations_pb2
from wamesh.conversations.v1.conversations_pb2_grpc import ConversationStoreStub
from wamesh.dispatch.v1 import dispatch_pb2 as pb
from wamesh.dispatch.v1.dispatch_pb2_grpc import DispatcherStub
from wamesh.tenants.v1 import tenants_pb2
from wamesh_conversations.app import conversations_service
from wamesh_dispatcher.app import dispatcher_service
from wamesh_kit.migrations import service_histories, upgrade_database
from wamesh_kit.rpc.server import GrpcService
from wamesh_kit.settings import DEV_ADMIN_TOKEN, DEV_INTERNAL_TOKEN

__all__ = ["registry", "registry_dsn"]


@pytest.fixture(scope="module")
def conversations_dsn(new_database: Callable[[str], str]) -> str:
    dsn = new_database("conversations")
    (history,) = [h for h in service_histories() if h.name == "conversations"]
    upgrade_database(dsn, history)
    return dsn


@pytest.fixture
async def conversations(conversations_dsn: str, redis_url: str) -> AsyncIterator[GrpcService]:
    settings = conversations_settings(conversations_dsn, redis_url)
    async with conversations_service(settings, registry=CollectorRegistry()) as server:
        yield server


CUSTOMER = "+15550002222"


async def test_an_enqueued_message_reaches_the_customer_through_the_tenants_account(
    sandbox: Running,
    registry: GrpcService,
    conversations: GrpcService,
    tenants: GrpcService,
    tenants_admin: Any,
    dispatcher_dsn: str,
    redis_url: str,
    grpc_channels: Callable[[int, str | None], Any],
) -> None:
    tenant = await create_tenant(tenants_admin)
    sender = SENDER.removeprefix("whatsapp:")
    await tenants_admin.AddSenderNumber(
        tenants_pb2.AddSenderNumberRequest(tenant_id=tenant.id, number=sender)
    )
    await tenants_admin.SetCredentials(
        tenants_pb2.SetCredentialsRequest(
            tenant_id=tenant.id,
            credentials=tenants_pb2.TwilioCredentials(
                account_sid=ACCOUNT.sid, auth_token=ACCOUNT.auth_token
            ),
        )
    )
    settings = make_settings(
        dispatcher_dsn,
        redis_url,
        send=True,
        tenants_target=f"127.0.0.1:{tenants.port}",
        workers_target=f"127.0.0.1:{registry.port}",
        conversations_target=f"127.0.0.1:{conversations.port}",
        twilio_base_url=sandbox.url,
        instance_id="dispatcher-e2e",
        census_interval_s=0.1,
    )
    metrics = CollectorRegistry()
    async with dispatcher_service(settings, registry=metrics) as server:
        internal: Any = DispatcherStub(grpc_channels(server.port, DEV_INTERNAL_TOKEN))
        answer = await internal.Enqueue(
            pb.EnqueueRequest(
                tenant_id=tenant.id,
                idempotency_key="order:1:confirmed",
                recipient_number=CUSTOMER,
                body="Your order is confirmed",
            )
        )
        request = pb.GetJobRequest(tenant_id=tenant.id, job_id=answer.job.id)
        async with asyncio.timeout(30):
            job = await internal.GetJob(request)
            while job.job.state != pb.JOB_STATE_SENT:
                await asyncio.sleep(0.1)
                job = await internal.GetJob(request)
            sent = {"tenant": tenant.id, "state": "sent"}
            while metrics.get_sample_value("wamesh_dispatch_jobs", sent) != 1.0:  # noqa: ASYNC110 - the census loop sets it
                await asyncio.sleep(0.1)

    store: Any = ConversationStoreStub(grpc_channels(conversations.port, DEV_ADMIN_TOKEN))
    [conversation] = (
        await store.ListConversations(
            conversations_pb2.ListConversationsRequest(tenant_id=tenant.id)
        )
    ).conversations
    [recorded] = (
        await store.ListMessages(
            conversations_pb2.ListMessagesRequest(
                tenant_id=tenant.id, conversation_id=conversation.id
            )
        )
    ).messages
    [delivered] = await sandbox_messages(sandbox, to=f"whatsapp:{CUSTOMER}")
    assert (delivered["body"], delivered["from"]) == ("Your order is confirmed", SENDER)
    assert job.job.provider_sid == delivered["sid"]
    assert (recorded.body, recorded.provider_sid) == ("Your order is confirmed", delivered["sid"])
    assert [a.outcome for a in job.job.attempt_history] == ["sent"]
    assert metrics.get_sample_value("wamesh_dispatch_attempts_total", {"outcome": "sent"}) == 1
    assert metrics.get_sample_value("wamesh_dispatch_send_seconds_count") == 1
