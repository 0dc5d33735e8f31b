"""Checks of what callers send: each failure names its field, before anything is stored."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from wamesh_kit.errors import InvalidArgument

MAX_ID = 200
MAX_ENDPOINT = 255
MAX_CAPACITY = 100_000
MAX_LABELS = 32
MAX_LABEL_KEY = 63
MAX_LABEL_VALUE = 255
MAX_QR_PAYLOAD = 4096
MAX_DETAIL = 500
MAX_HELD = MAX_CAPACITY
_KIND = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def text(value: str, field: str, limit: int = MAX_ID) -> str:
    if not value.strip():
        raise InvalidArgument("is required", field=field)
    if len(value) > limit:
        raise InvalidArgument(f"is longer than {limit} characters", field=field)
    return value


def kind(value: str, field: str = "kind") -> str:
    if not _KIND.fullmatch(value):
        raise InvalidArgument(
            "must be lowercase letters, digits and '-', e.g. 'twilio' or 'whatsapp-web'",
            field=field,
        )
    return value


def capacity(value: int) -> int:
    if not 1 <= value <= MAX_CAPACITY:
        raise InvalidArgument(f"must be from 1 to {MAX_CAPACITY}", field="capacity")
    return value


def labels(value: Mapping[str, str], field: str) -> dict[str, str]:
    if len(value) > MAX_LABELS:
        raise InvalidArgument(f"holds more than {MAX_LABELS} labels", field=field)
    for key, item in value.items():
        if not key or len(key) > MAX_LABEL_KEY:
            raise InvalidArgument(f"keys must be 1 to {MAX_LABEL_KEY} characters", field=field)
        if len(item) > MAX_LABEL_VALUE:
            raise InvalidArgument(
                f"value of {key!r} is longer than {MAX_LABEL_VALUE} characters", field=field
            )
    return dict(value)


def load(value: float) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgument("must be from 0.0 to 1.0", field="load")
    return value


def epoch(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field=field)
    return value


def page_size(value: int, default: int = 50, most: int = 500) -> int:
    if value < 0:
        raise InvalidArgument("must not be negative", field="page_size")
    return min(value or default, most)
