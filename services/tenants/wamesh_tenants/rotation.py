"""Re-encrypt every tenant's Twilio secrets under the active key (``wamesh tenants rotate-key``).

Runs against the tenants database directly, beside a live service: each row is swapped only
if it still holds what was read, so a SetCredentials racing the rotation keeps its value.
Routes and caches are untouched: the secrets' plaintext does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from wamesh_tenants.crypto import CredentialCipher
from wamesh_tenants.store import SealedCredentials, TenantStore


@dataclass(frozen=True)
class RotationReport:
    resealed: int
    changed_meanwhile: int  # rewritten by a concurrent SetCredentials, so already current


async def rotate_credentials(
    store: TenantStore, cipher: CredentialCipher, *, batch_size: int = 100
) -> RotationReport:
    resealed = changed_meanwhile = 0
    after = ""
    while batch := await store.credentials_not_under(
        cipher.active_key_id, after_tenant_id=after, limit=batch_size
    ):
        for tenant_id, old in batch:
            if await store.reseal(tenant_id, old, _resealed(cipher, tenant_id, old)):
                resealed += 1
            else:
                changed_meanwhile += 1
        after = batch[-1][0]
    return RotationReport(resealed, changed_meanwhile)


def _resealed(
    cipher: CredentialCipher, tenant_id: str, old: SealedCredentials
) -> SealedCredentials:
    secret = old.api_key_secret
    return replace(
        old,
        auth_token=cipher.reseal(old.auth_token, tenant_id=tenant_id, field="auth_token"),
        api_key_secret=(
            cipher.reseal(secret, tenant_id=tenant_id, field="api_key_secret")
            if secret is not None
            else None
        ),
    )
