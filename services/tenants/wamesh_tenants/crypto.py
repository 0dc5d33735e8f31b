"""Twilio secrets encrypted at rest with AES-256-GCM, under keys that can rotate.

Each ciphertext is stored beside the id of the key that sealed it, so a new key can become
active while old rows stay readable until ``wamesh tenants rotate-key`` re-encrypts them.
The tenant id and field name are authenticated data: a ciphertext copied to another tenant
or another column fails to decrypt instead of leaking.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class CredentialKeyError(ValueError):
    """A key is missing, malformed, or does not open a ciphertext."""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    ciphertext: bytes  # nonce || AES-GCM ciphertext and tag


def parse_keys(spec: str) -> dict[str, bytes]:
    """Parse ``id1:base64key,id2:base64key``; each key must be 32 bytes (AES-256)."""
    keys: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key_id, sep, encoded = item.partition(":")
        if not sep or not key_id:
            raise CredentialKeyError("credential keys look like id:base64key[,id:base64key]")
        try:
            key = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise CredentialKeyError(f"credential key {key_id!r} is not base64") from None
        if len(key) != 32:
            raise CredentialKeyError(f"credential key {key_id!r} must be 32 bytes, not {len(key)}")
        keys[key_id] = key
    if not keys:
        raise CredentialKeyError("at least one credential key is required")
    return keys


class CredentialCipher:
    """Seals with the active key; opens with whichever key a ciphertext names."""

    def __init__(self, keys: dict[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise CredentialKeyError(f"active credential key {active_key_id!r} is not configured")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.active_key_id = active_key_id

    def seal(self, plaintext: str, *, tenant_id: str, field: str) -> Sealed:
        nonce = os.urandom(_NONCE_BYTES)
        aad = _associated_data(tenant_id, field)
        sealed = self._keys[self.active_key_id].encrypt(nonce, plaintext.encode(), aad)
        return Sealed(self.active_key_id, nonce + sealed)

    def open(self, sealed: Sealed, *, tenant_id: str, field: str) -> str:
        cipher = self._keys.get(sealed.key_id)
        if cipher is None:
            raise CredentialKeyError(f"credential key {sealed.key_id!r} is not configured")
        nonce, body = sealed.ciphertext[:_NONCE_BYTES], sealed.ciphertext[_NONCE_BYTES:]
        try:
            return cipher.decrypt(nonce, body, _associated_data(tenant_id, field)).decode()
        except InvalidTag:
            raise CredentialKeyError(
                f"ciphertext does not open with key {sealed.key_id!r}"
            ) from None

    def reseal(self, sealed: Sealed, *, tenant_id: str, field: str) -> Sealed:
        """The same secret under the active key (unchanged if already under it)."""
        if sealed.key_id == self.active_key_id:
            return sealed
        return self.seal(
            self.open(sealed, tenant_id=tenant_id, field=field), tenant_id=tenant_id, field=field
        )


def _associated_data(tenant_id: str, field: str) -> bytes:
    return f"wamesh.tenants/{tenant_id}/{field}".encode()
