from __future__ import annotations

import pytest
from pydantic import ValidationError

from wamesh_kit.settings import (
    DEV_ADMIN_TOKEN,
    DatabaseServiceSettings,
    ServiceSettings,
    is_loopback_address,
)


def test_defaults_are_local_and_safe() -> None:
    settings = ServiceSettings()
    assert is_loopback_address(settings.grpc_listen)
    assert is_loopback_address(settings.metrics_listen)
    assert settings.admin_token.get_secret_value() == DEV_ADMIN_TOKEN
    assert DEV_ADMIN_TOKEN not in repr(settings)


def test_reads_wamesh_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAMESH_DATABASE_URL", "postgresql://u@db:5432/tenants")
    monkeypatch.setenv("WAMESH_DATABASE_POOL_SIZE", "3")
    monkeypatch.setenv("DATABASE_URL", "postgresql://ignored/without-prefix")
    settings = DatabaseServiceSettings()
    assert settings.database_url == "postgresql://u@db:5432/tenants"
    assert settings.database_pool_size == 3


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAMESH_DATABASE_POOL_SIZE", "zero")
    with pytest.raises(ValidationError, match="database_pool_size"):
        DatabaseServiceSettings()


def test_dev_tokens_are_refused_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAMESH_GRPC_LISTEN", "0.0.0.0:50051")
    monkeypatch.setenv("WAMESH_ADMIN_TOKEN", "a-real-admin-token")
    with pytest.raises(ValidationError) as raised:
        ServiceSettings()
    message = str(raised.value)
    assert "WAMESH_INTERNAL_TOKEN" in message
    assert "WAMESH_JWT_SECRET" in message
    assert "WAMESH_ADMIN_TOKEN" not in message


def test_real_tokens_allow_listening_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAMESH_GRPC_LISTEN", "[::]:50051")
    monkeypatch.setenv("WAMESH_ADMIN_TOKEN", "admin")
    monkeypatch.setenv("WAMESH_INTERNAL_TOKEN", "internal")
    monkeypatch.setenv("WAMESH_JWT_SECRET", "s" * 32)
    assert ServiceSettings().grpc_listen == "[::]:50051"


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("localhost:1", True),
        ("[::1]:1", True),
        ("0.0.0.0:1", False),
        ("[::]:1", False),
        ("tenants:50051", False),
    ],
)
def test_is_loopback_address(listen: str, loopback: bool) -> None:
    assert is_loopback_address(listen) is loopback
