"""Fixtures of every kit and contract test."""

from __future__ import annotations

import os

import pytest

# Not a service's setting: the suite's own choice of servers, read by tests/conftest.py.
_HARNESS_PREFIX = "WAMESH_TEST_"


@pytest.fixture(autouse=True)
def no_wamesh_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from no ``WAMESH_*`` variable, whatever the shell running pytest set:
    settings, and the processes the tests start, read only what the test itself sets."""
    names = [name for name in os.environ if name.startswith("WAMESH_")]
    for name in names:
        if not name.startswith(_HARNESS_PREFIX):
            monkeypatch.delenv(name)
