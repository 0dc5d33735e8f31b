from __future__ import annotations

# The sandbox's own fixtures, so these tests meet the same Twilio the sandbox's tests do.
from tests.tools.sandbox.conftest import _no_twilio_edge, sandbox

__all__ = ["_no_twilio_edge", "sandbox"]
