"""The sandbox's settings (``WAMESH_SANDBOX_*``) and the accounts it knows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Obviously not Twilio's: a newcomer's first run needs credentials that work with no setup,
# and that nobody could mistake for a real account.
DEV_ACCOUNT_SID = "AC00000000000000000000000000000001"
DEV_AUTH_TOKEN = "sandbox0auth0token00000000000001"
DEV_API_KEY_SID = "SK00000000000000000000000000000001"
DEV_API_KEY_SECRET = "sandbox0api0key0secret0000000001"
# Twilio's own WhatsApp sandbox number, which wamesh's examples use.
DEV_SENDER = "whatsapp:+14155238886"
DEV_WEBHOOK_URL = "http://127.0.0.1:8080/twilio/whatsapp#rc=3&rp=all"


class SandboxSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAMESH_SANDBOX_", extra="ignore")

    listen: str = "127.0.0.1:8090"
    # JSON: {"accounts": [{"sid", "auth_token", "api_keys": {sid: secret}, "senders":
    # {"whatsapp:+1...": {"webhook_url": ...}}, "messaging_services": {"MG...": [sender...]},
    # "content_sids": ["HX..."]}]}. Unset: the one development account above.
    accounts_file: Path | None = None
    # Append-only JSON lines of what happened, replayed at start. Unset: memory only, unless
    # WAMESH_DEV_DATA_DIR (set by `wamesh dev up`) names a folder to keep it in.
    record_file: Path | None = None
    dev_data_dir: Path | None = Field(default=None, validation_alias="WAMESH_DEV_DATA_DIR")
    max_body_bytes: int = 64 * 1024
    # Seconds between a message's successive statuses (queued, sent, delivered, read).
    status_delay_s: float = Field(default=0.05, ge=0)
    read_receipts: bool = True
    callback_timeout_s: float = Field(default=5.0, gt=0)
    callback_attempts: int = Field(default=3, ge=1)
    # Seeds the sandbox's random choices (out-of-order and duplicate callbacks, latency
    # ranges); unset, each run differs.
    random_seed: int | None = None
    # A free-form message to someone who has not written in this long fails with 63016.
    session_window_s: float = Field(default=24 * 3600, gt=0)
    log_level: str = "WARNING"

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must be HOST:PORT")
        return value

    def record_path(self) -> Path | None:
        if self.record_file is not None:
            return self.record_file
        if self.dev_data_dir is not None:
            return self.dev_data_dir / "record.jsonl"
        return None


@dataclass(frozen=True)
class Sender:
    number: str
    webhook_url: str | None = None


@dataclass(frozen=True)
class Account:
    sid: str
    auth_token: str
    api_keys: dict[str, str] = field(default_factory=dict)
    senders: dict[str, Sender] = field(default_factory=dict)
    messaging_services: dict[str, tuple[str, ...]] = field(default_factory=dict)
    content_sids: frozenset[str] = frozenset()


def dev_account() -> Account:
    return Account(
        sid=DEV_ACCOUNT_SID,
        auth_token=DEV_AUTH_TOKEN,
        api_keys={DEV_API_KEY_SID: DEV_API_KEY_SECRET},
        senders={DEV_SENDER: Sender(DEV_SENDER, DEV_WEBHOOK_URL)},
        content_sids=frozenset({"HX00000000000000000000000000000001"}),
    )


def accounts_from_json(document: object) -> list[Account]:
    """Accounts from the accounts file's JSON; ValueError naming the field that is wrong."""
    if not isinstance(document, dict) or not isinstance(document.get("accounts"), list):
        raise ValueError("accounts: must be a list")
    accounts = []
    for index, entry in enumerate(document["accounts"]):
        where = f"accounts[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: must be an object")
        sid, token = entry.get("sid"), entry.get("auth_token")
        if not isinstance(sid, str) or len(sid) != 34 or not sid.startswith("AC"):
            raise ValueError(f"{where}.sid: must be 'AC' and 32 hex digits")
        if not isinstance(token, str) or not token:
            raise ValueError(f"{where}.auth_token: must be a non-empty string")
        senders = {
            number: Sender(number, (spec or {}).get("webhook_url"))
            for number, spec in dict(entry.get("senders", {})).items()
        }
        accounts.append(
            Account(
                sid=sid,
                auth_token=token,
                api_keys=dict(entry.get("api_keys", {})),
                senders=senders,
                messaging_services={
                    mg: tuple(numbers)
                    for mg, numbers in dict(entry.get("messaging_services", {})).items()
                },
                content_sids=frozenset(entry.get("content_sids", [])),
            )
        )
    return accounts


def load_accounts(settings: SandboxSettings) -> list[Account]:
    if settings.accounts_file is None:
        return [dev_account()]
    return accounts_from_json(json.loads(settings.accounts_file.read_text()))
