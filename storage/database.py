"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.sqlite import begin_write as sqlite_begin_write
from storage.sqlite import make_sqlite_engine

SessionFactory = async_sessionmaker[AsyncSession]


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if is_sqlite(url):
        return make_sqlite_engine(url, **kwargs)
    # No pool_pre_ping: it costs a round trip on every checkout, i.e. on every update. A connection broken by
    # a server restart fails one unit of work instead, is invalidated, and the pool replaces it.
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_recycle=1800, **kwargs)


def make_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def begin_write(session: AsyncSession) -> None:
    """Make sure the session's transaction may write; idempotent within a unit of work.

    Call it before a unit of work's first statement. On SQLite it takes this process's write lock and the
    database's (``BEGIN IMMEDIATE``), so writers queue instead of failing when a read snapshot cannot be
    upgraded. On PostgreSQL row locks and constraints do that job and it does nothing.
    """
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        await sqlite_begin_write(session)
