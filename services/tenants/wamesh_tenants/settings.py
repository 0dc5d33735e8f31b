"""The tenants service's settings, from ``WAMESH_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from wamesh_kit.settings import DatabaseServiceSettings, is_loopback_address
from wamesh_tenants.crypto import CredentialCipher, parse_keys

# 32 zero bytes: fine for a laptop, refused anywhere else (see the validator below).
DEV_CREDENTIAL_KEYS = "dev:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


class TenantsSettings(DatabaseServiceSettings):
    service_name: str = "tenants"
    grpc_listen: str = "127.0.0.1:50051"
    metrics_listen: str = "127.0.0.1:9461"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/tenants"
    credential_keys: SecretStr = Field(
        default=SecretStr(DEV_CREDENTIAL_KEYS),
        description="AES-256 keys for Twilio secrets: id:base64key[,id:base64key]",
    )
    credential_active_key: str = Field(
        default="dev", description="Which key of credential_keys seals new secrets"
    )
    route_cache_ttl_s: int = Field(
        default=300, ge=1, description="Lifetime of a cached route, should an invalidation be lost"
    )

    @model_validator(mode="after")
    def _real_keys_off_loopback(self) -> TenantsSettings:
        if (
            not is_loopback_address(self.grpc_listen)
            and self.credential_keys.get_secret_value() == DEV_CREDENTIAL_KEYS
        ):
            raise ValueError(
                "WAMESH_CREDENTIAL_KEYS must be set: the development key is refused "
                f"when listening on {self.grpc_listen}"
            )
        self.cipher()  # fail at start-up, not at the first SetCredentials
        return self

    def cipher(self) -> CredentialCipher:
        return CredentialCipher(
            parse_keys(self.credential_keys.get_secret_value()), self.credential_active_key
        )
