"""Structured logging shared by every service.

JSON lines in a cluster (``WAMESH_LOG_FORMAT=json``), a readable line on a laptop. Every
record carries the service name and, inside a span, ``trace_id`` and ``span_id`` so a log
line leads to its trace. Never log tokens or message bodies at INFO: pass identifiers
(MessageSid, tenant id) as ``extra`` fields instead.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from wamesh_kit.settings import LogFormat

_CONSOLE_FORMAT = "%(asctime)s %(levelname)-5s %(name)s %(message)s%(trace_suffix)s"


class TraceContextFilter(logging.Filter):
    """Adds the current span's ids (hex, as in W3C traceparent) and the service name."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.service = self.service_name
        trace_id = format(context.trace_id, "032x") if context.is_valid else None
        record.trace_id = trace_id
        record.span_id = format(context.span_id, "016x") if context.is_valid else None
        record.trace_suffix = f" trace_id={trace_id}" if trace_id else ""
        return True


def _formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(_CONSOLE_FORMAT)


def configure_logging(
    service_name: str,
    *,
    level: str = "INFO",
    log_format: LogFormat = "console",
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route the root logger to one handler on ``stream`` (stderr by default); idempotent."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "wamesh", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.wamesh = True  # type: ignore[attr-defined]
    handler.addFilter(TraceContextFilter(service_name))
    handler.setFormatter(_formatter(log_format))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
