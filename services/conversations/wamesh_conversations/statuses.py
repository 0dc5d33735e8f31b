"""Which delivery status may follow which: statuses only move forward.

Twilio's callbacks arrive out of order, so a status is applied only if it is further along
than the current one. FAILED, UNDELIVERED and CANCELED are final: once reached nothing
changes, and they follow any status that is not final. So the final state depends on the
set of callbacks, never on their order, except between two different final statuses,
where the first one stays (Twilio sends at most one).
"""

from __future__ import annotations

from wamesh.conversations.v1 import conversations_pb2 as pb

S = pb.MessageStatus
_PROGRESS: dict[S.ValueType, int] = {
    pb.MESSAGE_STATUS_PENDING: 1,
    pb.MESSAGE_STATUS_ACCEPTED: 2,
    pb.MESSAGE_STATUS_SCHEDULED: 3,
    pb.MESSAGE_STATUS_QUEUED: 4,
    pb.MESSAGE_STATUS_SENDING: 5,
    pb.MESSAGE_STATUS_SENT: 6,
    pb.MESSAGE_STATUS_DELIVERED: 7,
    pb.MESSAGE_STATUS_READ: 8,
}
FINAL: frozenset[S.ValueType] = frozenset(
    {pb.MESSAGE_STATUS_FAILED, pb.MESSAGE_STATUS_UNDELIVERED, pb.MESSAGE_STATUS_CANCELED}
)
# What a status callback or the dispatcher may report for an outbound message.
OUTBOUND_STATUSES: frozenset[S.ValueType] = frozenset(_PROGRESS) | FINAL
# Failures the dispatcher must learn about (e.g. 63016 arrives only in a callback).
FAILURES: frozenset[S.ValueType] = frozenset(
    {pb.MESSAGE_STATUS_FAILED, pb.MESSAGE_STATUS_UNDELIVERED}
)


def advances(current: S.ValueType, new: S.ValueType) -> bool:
    """True if a message at ``current`` moves to ``new``."""
    if current not in _PROGRESS or new not in OUTBOUND_STATUSES:
        return False  # final already, or not an outbound message at all (RECEIVED)
    return new in FINAL or _PROGRESS[new] > _PROGRESS[current]


def order_key(status: S.ValueType) -> int:
    """Applying statuses sorted by this gives the same result as any order would."""
    return 100 if status in FINAL else _PROGRESS.get(status, 0)
