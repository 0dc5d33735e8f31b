"""The conversations service's settings, from ``WAMESH_*`` environment variables."""

from __future__ import annotations

from pydantic import Field

from wamesh_kit.settings import DatabaseServiceSettings

# A status callback waits for UpdateOutbound to attach its SID, normally seconds later; one
# still waiting after a week belongs to a send that never reported back (or to no message
# of ours), and is kept no longer.
DEFAULT_PENDING_STATUS_RETENTION_S = 7 * 86_400
DEFAULT_STREAM_RETENTION_S = 3_600


class ConversationsSettings(DatabaseServiceSettings):
    service_name: str = "conversations"
    grpc_listen: str = "127.0.0.1:50052"
    metrics_listen: str = "127.0.0.1:9462"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/conversations"
    outbox_batch_size: int = Field(
        default=500, ge=1, description="Outbox rows the relay moves to Redis per transaction"
    )
    outbox_poll_s: float = Field(
        default=0.5,
        gt=0,
        description="How often the relay looks for rows it was not told about (other replicas)",
    )
    outbox_retention_s: int = Field(
        default=86_400, ge=0, description="How long published outbox rows are kept"
    )
    stream_retention_s: int = Field(
        default=DEFAULT_STREAM_RETENTION_S,
        ge=0,
        description="How long an event every consumer group has acknowledged stays on its "
        "stream (inbound, statuses) before it is trimmed",
    )
    pending_status_retention_s: int = Field(
        default=DEFAULT_PENDING_STATUS_RETENTION_S,
        ge=0,
        description="How long a status callback for a SID no message has claimed is kept",
    )
    outbox_heal_check_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the relay checks, even with nothing to publish, that Redis still "
        "holds the streams it published to (and publishes their retained window again if not)",
    )
