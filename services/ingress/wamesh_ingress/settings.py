"""The ingress's settings, from ``WAMESH_*`` environment variables."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from wamesh_kit.settings import DEV_INTERNAL_TOKEN, WameshSettings, is_loopback_address

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class IngressSettings(WameshSettings):
    service_name: str = "ingress"
    http_listen: str = "127.0.0.1:8080"
    public_base_url: str | None = Field(
        default=None,
        description="The scheme://host[:port] Twilio calls, e.g. https://hooks.example.com; "
        "signatures are checked against it",
    )
    # NoDecode: the variable is a plain comma-separated list, not JSON.
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list,
        description="Peers whose X-Forwarded-* headers are believed, as CIDRs (comma-separated)",
    )
    tenants_target: str = "127.0.0.1:50051"
    conversations_target: str = "127.0.0.1:50052"
    internal_token: SecretStr = SecretStr(DEV_INTERNAL_TOKEN)
    rpc_timeout_s: float = Field(
        default=2.0, gt=0, description="Deadline of each call to tenants/conversations"
    )
    answer_within_s: float = Field(
        default=5.0,
        gt=0,
        lt=15,
        description=(
            "Every webhook is answered within this (200 once stored or spilled, else 503);"
            " Twilio gives up after 15 s"
        ),
    )
    store_retry_after_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "After the store failed a webhook, the next ones spill at once for this long;"
            " then one tries the store again"
        ),
    )
    redis_timeout_s: float = Field(default=1.0, gt=0, description="Deadline of each Redis command")
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="A body not fully received in this time is answered 408"
    )
    http_limit_concurrency: int = Field(
        default=2048,
        ge=1,
        description="Connections and requests at once before uvicorn answers 503",
    )
    http_keepalive_s: float = Field(
        default=75.0,
        gt=0,
        description=(
            "Idle keep-alive connections are closed after this; keep it above the ingress"
            " controller's upstream keep-alive, so the proxy never reuses a closed connection"
        ),
    )
    max_body_bytes: int = Field(default=65_536, ge=1024)
    dedup_ttl_s: int = Field(default=86_400, ge=60, description="How long a MessageSid is known")
    route_cache_ttl_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Lifetime of a cached tenant route, should an invalidation be lost; an expired"
            " route is used for one more TTL while a background lookup refreshes it"
        ),
    )
    per_ip_requests_per_s: float = Field(
        default=200.0, gt=0, description="Requests a single source IP may make per second"
    )
    per_ip_burst: int = Field(default=400, ge=1)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("public_base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def spill_reserve_s(self) -> float:
        """The most a spill may take: waiting for a pooled connection, then the command."""
        return self.redis_pool_timeout_s + self.redis_timeout_s

    @model_validator(mode="after")
    def _time_to_spill(self) -> IngressSettings:
        if self.answer_within_s <= 2 * self.spill_reserve_s:
            raise ValueError(
                "WAMESH_ANSWER_WITHIN_S must exceed twice WAMESH_REDIS_POOL_TIMEOUT_S +"
                " WAMESH_REDIS_TIMEOUT_S: a webhook needs time to be counted, stored, and"
                " spilled if the store is slow"
            )
        return self

    @model_validator(mode="after")
    def _real_token_off_loopback(self) -> IngressSettings:
        if (
            not is_loopback_address(self.http_listen)
            and self.internal_token.get_secret_value() == DEV_INTERNAL_TOKEN
        ):
            raise ValueError(
                f"WAMESH_INTERNAL_TOKEN must be set when listening on {self.http_listen}"
            )
        return self
