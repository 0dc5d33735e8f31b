from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.tools.sandbox.sandbox_testkit import Running, running_sandbox


@pytest.fixture(autouse=True)
def _no_twilio_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    # The twilio libraries rewrite hostnames from these; the sandbox must see its own URL.
    for name in ("TWILIO_EDGE", "TWILIO_REGION", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def sandbox() -> AsyncIterator[Running]:
    async with running_sandbox() as running:
        yield running
