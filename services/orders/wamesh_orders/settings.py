"""The orders service's settings, from ``WAMESH_*`` environment variables."""

from __future__ import annotations

from pydantic import Field

from wamesh_kit.settings import DatabaseServiceSettings


class OrdersSettings(DatabaseServiceSettings):
    service_name: str = "orders"
    grpc_listen: str = "127.0.0.1:50053"
    metrics_listen: str = "127.0.0.1:9463"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/orders"
    tenants_target: str = "127.0.0.1:50051"
    conversations_target: str = "127.0.0.1:50052"
    dispatcher_target: str = "127.0.0.1:50054"
    rpc_timeout_s: float = Field(default=2.0, gt=0)
    instance_id: str = Field(
        default="", description="Consumer name in the inbound group; empty: one per start"
    )
    inbound_redelivery_s: float = Field(
        default=30.0,
        gt=0,
        description="How long an inbound event may stay unacknowledged (its handler failed, "
        "or its replica died) before it is handled again",
    )
    inbound_concurrency: int = Field(
        default=8,
        ge=1,
        le=64,
        description="How many customers' messages one replica handles at once (each "
        "customer's in order); each holds a database connection, so keep it below "
        "WAMESH_DATABASE_POOL_SIZE",
    )
    backlog_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often wamesh_orders_inbound_backlog_seconds is measured",
    )
    rating_prompt_delay_s: float = Field(
        default=1800.0, ge=0, description="How long after DELIVERED the rating prompt goes out"
    )
    cart_expiry_s: float = Field(
        default=86_400.0, gt=0, description="A cart untouched this long is cancelled (expired)"
    )
    processed_retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="How long a handled inbound message is remembered, so that its "
        "redelivery or replay changes nothing; keep it above the conversation store's "
        "WAMESH_OUTBOX_RETENTION_S, the window it may publish again",
    )
    sweep_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often expired carts and handled messages past retention are looked for",
    )
