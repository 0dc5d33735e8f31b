from __future__ import annotations

import base64
import os

import pytest

from wamesh_tenants.crypto import CredentialCipher, CredentialKeyError, Sealed, parse_keys

K1, K2 = os.urandom(32), os.urandom(32)


def test_seal_then_open_with_the_named_key() -> None:
    cipher = CredentialCipher({"k1": K1}, "k1")
    sealed = cipher.seal("secret-token", tenant_id="acme", field="auth_token")
    assert sealed.key_id == "k1"
    assert b"secret-token" not in sealed.ciphertext
    assert cipher.open(sealed, tenant_id="acme", field="auth_token") == "secret-token"


def test_each_seal_uses_a_fresh_nonce() -> None:
    cipher = CredentialCipher({"k1": K1}, "k1")
    one = cipher.seal("same", tenant_id="acme", field="auth_token")
    two = cipher.seal("same", tenant_id="acme", field="auth_token")
    assert one.ciphertext != two.ciphertext


def test_a_ciphertext_moved_to_another_tenant_or_field_does_not_open() -> None:
    cipher = CredentialCipher({"k1": K1}, "k1")
    sealed = cipher.seal("secret", tenant_id="acme", field="auth_token")
    with pytest.raises(CredentialKeyError):
        cipher.open(sealed, tenant_id="other", field="auth_token")
    with pytest.raises(CredentialKeyError):
        cipher.open(sealed, tenant_id="acme", field="api_key_secret")


def test_rotation_reseals_under_the_active_key_and_old_rows_still_open() -> None:
    old = CredentialCipher({"k1": K1}, "k1").seal("tok", tenant_id="t", field="auth_token")
    rotated = CredentialCipher({"k1": K1, "k2": K2}, "k2")
    assert rotated.open(old, tenant_id="t", field="auth_token") == "tok"
    resealed = rotated.reseal(old, tenant_id="t", field="auth_token")
    assert resealed.key_id == "k2"
    assert (
        CredentialCipher({"k2": K2}, "k2").open(resealed, tenant_id="t", field="auth_token")
        == "tok"
    )
    assert rotated.reseal(resealed, tenant_id="t", field="auth_token") is resealed


def test_unknown_key_id_is_a_clear_error() -> None:
    cipher = CredentialCipher({"k1": K1}, "k1")
    with pytest.raises(CredentialKeyError, match="'gone'"):
        cipher.open(Sealed("gone", b"x" * 40), tenant_id="t", field="auth_token")


def test_parse_keys() -> None:
    spec = f"k1:{base64.b64encode(K1).decode()}, k2:{base64.b64encode(K2).decode()}"
    assert parse_keys(spec) == {"k1": K1, "k2": K2}
    with pytest.raises(CredentialKeyError, match="32 bytes"):
        parse_keys(f"k1:{base64.b64encode(b'short').decode()}")
    with pytest.raises(CredentialKeyError, match="base64"):
        parse_keys("k1:not base64!")
    with pytest.raises(CredentialKeyError, match="at least one"):
        parse_keys("")
    with pytest.raises(CredentialKeyError):
        CredentialCipher({"k1": K1}, "k9")
