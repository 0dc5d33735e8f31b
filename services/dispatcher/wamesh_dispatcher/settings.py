"""The dispatcher's settings, from ``WAMESH_*`` environment variables."""

from __future__ import annotations

from pydantic import Field

from wamesh_kit.settings import DatabaseServiceSettings


class DispatcherSettings(DatabaseServiceSettings):
    service_name: str = "dispatcher"
    grpc_listen: str = "127.0.0.1:50054"
    metrics_listen: str = "127.0.0.1:9464"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/dispatcher"
    tenants_target: str = "127.0.0.1:50051"
    workers_target: str = "127.0.0.1:50055"
    conversations_target: str = Field(
        default="127.0.0.1:50052",
        description="Where outbound messages are recorded; empty sends without recording",
    )
    rpc_timeout_s: float = Field(default=2.0, gt=0)
    send: bool = Field(
        default=True,
        description="Send for the senders the workers registry places here (false: intake only)",
    )
    # This replica as a session worker of kind "twilio".
    instance_id: str = Field(default="", description="Pod name; empty: one per start")
    worker_endpoint: str = ""
    worker_capacity: int = Field(default=1000, ge=1, description="Most senders it sends for")
    # Twilio.
    twilio_base_url: str = Field(
        default="", description="Empty: Twilio itself; else the sandbox's URL (development)"
    )
    twilio_timeout_s: float = Field(default=15.0, gt=0)
    status_callback_url: str = Field(
        default="http://127.0.0.1:8080/twilio/status",
        description="ingress's public /twilio/status, given to Twilio with every message",
    )
    # Sending.
    max_attempts: int = Field(default=5, ge=1, le=20)
    backoff_base_s: float = Field(default=2.0, gt=0)
    backoff_cap_s: float = Field(default=30.0, gt=0)
    sends_in_flight_per_sender: int = Field(default=32, ge=1)
    census_interval_s: float = Field(
        default=5.0, gt=0, description="How often jobs are counted by tenant and state (metrics)"
    )
    reconcile_interval_s: float = Field(
        default=5.0, gt=0, description="How often a sender's queue is read again from Postgres"
    )
