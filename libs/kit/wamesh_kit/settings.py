"""Typed settings read once from ``WAMESH_*`` environment variables.

Each service declares one subclass of :class:`ServiceSettings` in its own folder and builds it
in ``__main__``; nothing else reads the environment. Every field has a default that is safe on
a laptop: servers bind to loopback, and the well-known development tokens are refused as soon
as a server listens on anything but loopback.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_ADMIN_TOKEN = "wamesh-dev-admin-token"
DEV_INTERNAL_TOKEN = "wamesh-dev-internal-token"
DEV_JWT_SECRET = "wamesh-dev-jwt-secret-change-me-0123456789"

LogFormat = Literal["json", "console"]


def is_loopback_address(listen: str) -> bool:
    """True for ``127.0.0.1:50051``, ``localhost:80``, ``[::1]:443``; False for ``0.0.0.0:1``."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WameshSettings(BaseSettings):
    """What every wamesh process reads: logging, telemetry and Redis."""

    model_config = SettingsConfigDict(env_prefix="WAMESH_", extra="ignore", frozen=True)

    service_name: str = "wamesh"
    log_level: str = "INFO"
    log_format: LogFormat = "console"
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/gRPC collector, e.g. http://otel-collector:4317"
    )
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = Field(
        default=64, ge=1, description="Connections in the process's Redis pool"
    )
    redis_pool_timeout_s: float = Field(
        default=1.0,
        gt=0,
        description="How long a command waits for a free pooled connection before failing",
    )


class ServiceSettings(WameshSettings):
    """What every gRPC service reads on top: where it listens and the tokens it checks."""

    grpc_listen: str = "127.0.0.1:50051"
    metrics_listen: str = "127.0.0.1:9464"
    shutdown_grace_s: float = Field(default=10.0, ge=0)
    admin_token: SecretStr = SecretStr(DEV_ADMIN_TOKEN)
    internal_token: SecretStr = SecretStr(DEV_INTERNAL_TOKEN)
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)

    @model_validator(mode="after")
    def _no_dev_secrets_off_loopback(self) -> ServiceSettings:
        if is_loopback_address(self.grpc_listen):
            return self
        defaults = {
            "WAMESH_ADMIN_TOKEN": (self.admin_token, DEV_ADMIN_TOKEN),
            "WAMESH_INTERNAL_TOKEN": (self.internal_token, DEV_INTERNAL_TOKEN),
            "WAMESH_JWT_SECRET": (self.jwt_secret, DEV_JWT_SECRET),
        }
        unsafe = [
            name for name, (value, dev) in defaults.items() if value.get_secret_value() == dev
        ]
        if unsafe:
            raise ValueError(
                f"{', '.join(unsafe)} must be set: the development defaults are refused "
                f"when listening on {self.grpc_listen}"
            )
        return self


class DatabaseServiceSettings(ServiceSettings):
    """A service that owns a PostgreSQL database."""

    database_url: str = "postgresql://postgres@127.0.0.1:5432/wamesh"
    database_pool_size: int = Field(default=10, ge=1)
