"""The mesh under faults, as Twilio sees it: webhooks paced well above every pool and batch
size, each on its own connection with Twilio's 15 s, sent again on a 5xx or a timeout, while
the store freezes, Postgres restarts, the conversations process is SIGKILLed, or Redis is
flushed. Then each MessageSid's fate, one by one: every one Twilio saw answered 200 is
stored, none twice, and with Redis up every one is answered 200 in the end."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.faults.mesh import INBOUND_STREAM, FaultMesh, MeshTenant
from tools.faults.twilio_sender import Delivery, TwilioSender
from wamesh.events.v1 import events_pb2

RATE = 150  # webhooks per second, paced: far more in flight than the Redis pool holds
LEAD_S = 2.0  # load before the fault
TAIL_S = 4.0  # load after it
REDIS_POOL = 16
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mesh() -> Iterator[FaultMesh]:
    # Under the repository, as the suite's servers are: PostgreSQL's own user must reach it.
    data_dir = REPO_ROOT / ".wamesh" / "faults" / uuid.uuid4().hex[:12]
    try:
        with FaultMesh(
            data_dir, ingress_env={"WAMESH_REDIS_MAX_CONNECTIONS": str(REDIS_POOL)}
        ) as running:
            yield running
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
async def tenant(mesh: FaultMesh) -> MeshTenant:
    return await mesh.create_tenant()


@dataclass
class Fates:
    deliveries: list[Delivery]
    stored: dict[str, int]

    def lost(self) -> list[str]:
        """Answered 200 (Twilio will never send it again), and not stored."""
        return [d.message_sid for d in self.deliveries if d.acknowledged and not self._count(d)]

    def doubled(self) -> list[str]:
        return [d.message_sid for d in self.deliveries if self._count(d) > 1]

    def given_up(self) -> list[str]:
        """Never answered 200 within Twilio's retries."""
        return [d.message_sid for d in self.deliveries if not d.acknowledged]

    def _count(self, delivery: Delivery) -> int:
        return self.stored.get(delivery.message_sid, 0)

    def check(self) -> None:
        lost, doubled, given_up = self.lost(), self.doubled(), self.given_up()
        attempts = sum(len(d.attempts) for d in self.deliveries)
        assert (len(lost), len(doubled), len(given_up)) == (0, 0, 0), (
            f"of {len(self.deliveries)} webhooks ({attempts} attempts): {len(lost)} answered 200"
            f" and never stored (e.g. {lost[:3]}), {len(doubled)} stored twice, "
            f"{len(given_up)} never answered 200 (e.g. {given_up[:3]})"
        )


async def under_fault(
    mesh: FaultMesh, tenant: MeshTenant, fault: Callable[[], None], fault_s: float
) -> Fates:
    """Webhooks at RATE for LEAD_S, through ``fault`` (a blocking call lasting about
    ``fault_s``), and TAIL_S after; then what the store holds once the spill is replayed."""
    sender = TwilioSender(
        mesh.ports["ingress"],
        account_sid=tenant.account_sid,
        auth_token=tenant.auth_token,
        sender_number=tenant.number,
    )
    count = int(RATE * (LEAD_S + fault_s + TAIL_S))
    webhooks = [sender.webhook(f"+1555{i % 300:07d}", f"order #{i}") for i in range(count)]

    async def fault_after_lead() -> None:
        await asyncio.sleep(LEAD_S)
        await asyncio.to_thread(fault)

    deliveries, _ = await asyncio.gather(sender.offer(webhooks, RATE), fault_after_lead())
    return Fates(deliveries, await mesh.settled(tenant.tenant_id))


def freeze_for(
    mesh: FaultMesh, pids: Callable[[], list[int]], seconds: float
) -> Callable[[], None]:
    def fault() -> None:
        with mesh.frozen(*pids()):
            time.sleep(seconds)

    return fault


async def test_store_frozen_longer_than_the_answer_bound(
    mesh: FaultMesh, tenant: MeshTenant
) -> None:
    fates = await under_fault(
        mesh, tenant, freeze_for(mesh, lambda: [mesh.postgres_pid()], 8.0), 8.0
    )
    fates.check()


async def test_conversations_process_frozen(mesh: FaultMesh, tenant: MeshTenant) -> None:
    pid = mesh.services["conversations"].pid
    fates = await under_fault(mesh, tenant, freeze_for(mesh, lambda: [pid], 8.0), 8.0)
    fates.check()


async def test_postgres_stopped_and_restarted(mesh: FaultMesh, tenant: MeshTenant) -> None:
    def fault() -> None:
        mesh.infra.postgres.stop()
        time.sleep(4.0)
        mesh.infra.postgres.start()

    fates = await under_fault(mesh, tenant, fault, 5.0)
    fates.check()


async def test_conversations_sigkilled_and_restarted(mesh: FaultMesh, tenant: MeshTenant) -> None:
    fates = await under_fault(
        mesh, tenant, lambda: mesh.kill_and_restart("conversations", down_s=3.0), 5.0
    )
    fates.check()


async def test_redis_flushed_loses_no_webhook_and_the_inbound_stream_heals(
    mesh: FaultMesh, tenant: MeshTenant
) -> None:
    def flush() -> None:
        async def flushall() -> None:
            client = await mesh.redis()
            try:
                await client.flushall()
            finally:
                await client.aclose()

        asyncio.run(flushall())

    fates = await under_fault(mesh, tenant, flush, 0.0)
    fates.check()
    # The events published before the flush are published again from the outbox.
    missing = await missing_from_inbound_stream(mesh, tenant.tenant_id, set(fates.stored))
    assert not missing, f"{len(missing)} stored, never on the stream (e.g. {sorted(missing)[:3]})"


async def missing_from_inbound_stream(
    mesh: FaultMesh, tenant_id: str, message_sids: set[str], timeout_s: float = 30
) -> set[str]:
    """Which of ``message_sids`` the inbound stream lacks, once it has them all or
    ``timeout_s`` passed."""
    client = await mesh.redis()
    deadline = time.monotonic() + timeout_s
    missing = set(message_sids)
    try:
        while missing and time.monotonic() < deadline:
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(INBOUND_STREAM)  # type: ignore[assignment]
            for _, fields in entries:
                event = events_pb2.InboundMessageEvent.FromString(fields[b"payload"])
                if event.tenant_id == tenant_id:
                    missing.discard(event.content.message_sid)
            await asyncio.sleep(0.5)
        return missing
    finally:
        await client.aclose()
