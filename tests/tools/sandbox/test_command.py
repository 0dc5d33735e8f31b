"""``wamesh dev sandbox`` as a newcomer runs it: the installed command in its own process,
serving the development account to the real twilio library until SIGTERM stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
from twilio.rest import Client

from wamesh_sandbox.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, DEV_SENDER

WAMESH = Path(sys.executable).with_name("wamesh")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def until_healthy(url: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=url) as http, asyncio.timeout(60):
        while True:
            if process.returncode is not None:
                raise AssertionError(f"wamesh dev sandbox exited {process.returncode}")
            try:
                if (await http.get("/sandbox/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def test_wamesh_dev_sandbox_serves_the_twilio_library_and_stops_on_sigterm() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    # Nothing from the developer's shell: no record folder, no other listen address or
    # account, no Twilio region rewriting the library's host.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAMESH_", "TWILIO_"))}
    env["WAMESH_SANDBOX_LISTEN"] = url.removeprefix("http://")
    process = await asyncio.create_subprocess_exec(
        str(WAMESH),
        "dev",
        "sandbox",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until_healthy(url, process)
        client = Client(DEV_ACCOUNT_SID, DEV_AUTH_TOKEN)
        client.api.base_url = url
        created = await asyncio.to_thread(
            lambda: client.messages.create(
                to="whatsapp:+15550001111", from_=DEV_SENDER, body="smoke"
            )
        )
        fetched = await asyncio.to_thread(lambda: client.messages(created.sid).fetch())

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            _, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert created.sid.startswith("SM")
    assert (created.status, created.body) == ("queued", "smoke")
    assert fetched.sid == created.sid
    assert process.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()
    assert "not Twilio" in err.decode()  # it says what it is when it starts
