"""Datetimes as protobuf Timestamps, for every service's mapping to its contract."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(value: datetime) -> Timestamp:
    """``Timestamp.FromDatetime`` by timedelta arithmetic (a naive value is UTC, as there):
    protobuf's goes through ``calendar.timegm``, which costs more, and this runs several
    times a row."""
    since = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    return Timestamp(seconds=since.days * 86_400 + since.seconds, nanos=since.microseconds * 1000)


def optional_timestamp(value: datetime | None) -> Timestamp | None:
    """:func:`timestamp`, or None (the field left unset) for None."""
    return None if value is None else timestamp(value)
