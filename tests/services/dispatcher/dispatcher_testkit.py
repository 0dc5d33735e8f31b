"""The dispatcher's Twilio adapter pointed at a running sandbox, and the sandbox's admin API."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tests.tools.sandbox.sandbox_testkit import ACCOUNT, Running
from wamesh_dispatcher.twilio_api import TwilioApi


@contextlib.asynccontextmanager
async def twilio_api(base_url: str, **options: Any) -> AsyncIterator[TwilioApi]:
    async with TwilioApi(ACCOUNT.sid, ACCOUNT.auth_token, base_url=base_url, **options) as api:
        yield api


async def add_fault(sandbox: Running, **spec: Any) -> None:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as http:
        response = await http.post("/sandbox/faults", json={"account_sid": ACCOUNT.sid, **spec})
    assert response.status_code == 201, response.text


async def sandbox_messages(sandbox: Running, **params: str) -> list[dict[str, Any]]:
    """What the sandbox says customers received, oldest first."""
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as http:
        response = await http.get("/sandbox/messages", params=params)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages
