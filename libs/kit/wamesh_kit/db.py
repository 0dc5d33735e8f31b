"""Async SQLAlchemy 2 over asyncpg: one engine per service, used through SQLAlchemy Core."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def async_url(database_url: str) -> URL:
    """Accept the plain ``postgresql://`` DSN operators write and select the asyncpg driver."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return url.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL scheme {url.drivername!r}: use postgresql://")


def make_engine(database_url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An engine whose pool drops dead connections, so a Postgres restart heals by itself."""
    engine = create_async_engine(
        async_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # Not pool_pre_ping: over asyncpg it costs three round trips (BEGIN, ping, ROLLBACK)
        # on every checkout, more than most of our statements. See _drop_closed instead.
        pool_pre_ping=False,
        pool_timeout=5,
        echo=echo,
        connect_args={"timeout": 5, "command_timeout": 30},
    )
    event.listen(engine.sync_engine.pool, "checkout", _drop_closed)
    return engine


def _drop_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Refuse a pooled connection the server has closed; the pool then opens a new one.

    A restarting or crashed Postgres closes its sockets, and asyncpg marks the connection
    closed as soon as the event loop sees that: checking the flag costs no round trip.
    (SQLAlchemy's documented "pessimistic disconnect handling" with a custom check.)
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")
