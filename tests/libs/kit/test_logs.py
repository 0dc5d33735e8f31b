from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from wamesh_kit.logs import configure_logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_json_lines_carry_service_and_trace_ids() -> None:
    stream = io.StringIO()
    configure_logging("tenants", log_format="json", stream=stream)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        logging.getLogger("wamesh.test").info("resolved", extra={"tenant_id": "acme"})
        context = span.get_span_context()
    logging.getLogger("wamesh.test").warning("outside")

    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "resolved"
    assert inside["level"] == "INFO"
    assert inside["service"] == "tenants"
    assert inside["tenant_id"] == "acme"
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert outside["trace_id"] is None


@pytest.mark.usefixtures("restore_root_logger")
def test_console_format_is_one_readable_line() -> None:
    stream = io.StringIO()
    configure_logging("ingress", log_format="console", level="debug", stream=stream)
    logging.getLogger("wamesh.test").debug("hello")
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("DEBUG wamesh.test hello")


@pytest.mark.usefixtures("restore_root_logger")
def test_configuring_twice_keeps_one_handler() -> None:
    stream = io.StringIO()
    configure_logging("a", stream=stream)
    configure_logging("a", stream=stream)
    logging.getLogger("wamesh.test").info("once")
    assert stream.getvalue().count("once") == 1
