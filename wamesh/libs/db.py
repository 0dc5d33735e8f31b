"""Async SQLAlchemy 2 over asyncpg: one engine per service, sessions per unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Subclassed once per service, so each service's metadata holds only its own tables."""


def async_url(database_url: str) -> URL:
    """Accept the plain ``postgresql://`` DSN operators write and select the asyncpg driver."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return url.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL scheme {url.drivername!r}: use postgresql://")


def make_engine(database_url: str, *, pool_size: int = 10, echo: bool = False) -> AsyncEngine:
    """An engine whose pool drops dead connections, so a Postgres restart heals by itself."""
    return create_async_engine(
        async_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=5,
        echo=echo,
        connect_args={"timeout": 5, "command_timeout": 30},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: objects stay readable after commit, which async code needs
    # (a lazy refresh would be implicit I/O).
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit when the block ends, roll back on any exception."""
    async with sessions() as session, session.begin():
        yield session
