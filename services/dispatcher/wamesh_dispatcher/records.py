"""The conversation store's side of a send: the outbound message is recorded before the
first attempt, so a conversation shows what is on its way (and the store refuses it if the
recipient opted out), Twilio's MessageSid is attached once the message is accepted, so the
status callbacks that follow find it, and Twilio's own 21610 opts the recipient out there."""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any

import grpc
import grpc.aio

from wamesh.common.v1 import content_pb2
from wamesh.conversations.v1 import conversations_pb2 as pb
from wamesh_dispatcher.store import JobRow

log = logging.getLogger(__name__)


class Recorded(Enum):
    """What recording a job's message said."""

    YES = "yes"
    STORE_AWAY = "store_away"
    # The recipient opted out: the store failed the message with 21610; it must not be sent.
    RECIPIENT_OPTED_OUT = "recipient_opted_out"


class OutboundRecords:
    def __init__(self, stub: Any, timeout_s: float) -> None:
        self._stub = stub
        self._timeout_s = timeout_s

    async def record(self, job: JobRow) -> Recorded:
        """Record the job's message (idempotent on its key)."""
        request = pb.RecordOutboundRequest(
            tenant_id=job.tenant_id,
            idempotency_key=job.idempotency_key,
            sender_number=job.sender_number,
            customer_number=job.recipient_number,
            body=job.body,
            media=[content_pb2.Media(url=url, content_type=kind) for url, kind in job.media],
            despite_opt_out=job.despite_opt_out,
        )
        if job.template is not None:
            request.template.CopyFrom(
                content_pb2.ContentTemplate(
                    content_sid=job.template.content_sid, variables=job.template.variables
                )
            )
        try:
            response = await self._stub.RecordOutbound(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            log.warning("recording job %s's message failed: %s", job.id, error.code().name)
            return Recorded.STORE_AWAY
        return Recorded.RECIPIENT_OPTED_OUT if response.recipient_opted_out else Recorded.YES

    async def attach(self, job: JobRow, provider_sid: str) -> None:
        """Attach the MessageSid. Not worth failing a sent message over: a status callback
        for a SID never attached is kept aside by the store for a while, and the SID stays
        on the job."""
        request = pb.UpdateOutboundRequest(
            tenant_id=job.tenant_id, idempotency_key=job.idempotency_key, provider_sid=provider_sid
        )
        try:
            await self._stub.UpdateOutbound(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            log.warning(
                "attaching %s to job %s failed: %s", provider_sid, job.id, error.code().name
            )

    async def opt_out(self, job: JobRow) -> None:
        """Mark the job's recipient opted out, after Twilio refused it with 21610, so later
        jobs are failed without being tried. Only logged if it fails: Twilio refuses the
        next one too, and that refusal marks it again."""
        request = pb.SetOptOutRequest(
            tenant_id=job.tenant_id,
            participants=pb.ConversationKey(
                customer_number=job.recipient_number, sender_number=job.sender_number
            ),
            opted_out=True,
            reason="twilio 21610",
        )
        try:
            await self._stub.SetOptOut(request, timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            log.warning(
                "marking job %s's recipient opted out failed: %s", job.id, error.code().name
            )
