"""What the benchmarks share: starting a process to measure, optionally under py-spy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def serve(
    service: str, env: Mapping[str, str], profile: str | None = None
) -> subprocess.Popen[bytes]:
    """``wamesh serve <service>`` with ``env`` on top of ours (logs at WARNING)."""
    return start([sys.executable, "-m", "wamesh_kit", "serve", service], env, profile)


def start(
    command: Sequence[str], env: Mapping[str, str], profile: str | None = None
) -> subprocess.Popen[bytes]:
    """``command`` in the background; with ``profile``, py-spy samples it into that file:
    collapsed stacks for a ``.txt``, a flame graph otherwise. Its stdout goes to our stderr,
    so that a benchmark's stdout holds its figures alone."""
    argv = list(command)
    if profile:
        spy = str(Path(sys.executable).parent / "py-spy")
        output_format = "raw" if profile.endswith(".txt") else "flamegraph"
        argv = [spy, "record", "-r", "200", "-f", output_format, "-o", profile, "--", *argv]
    return subprocess.Popen(
        argv,
        env={**os.environ, "WAMESH_LOG_LEVEL": "WARNING", **env},
        stdin=subprocess.DEVNULL,
        stdout=sys.stderr,
    )
