"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SessionFactory = async_sessionmaker[AsyncSession]
_WRITE = "loyalty_write"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _sqlite_pragmas(engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **kwargs)


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A unit of work that will write takes the write lock up front (begin_write), so it queues on
        # busy_timeout instead of failing when a read snapshot cannot be upgraded. Otherwise pysqlite's own
        # handling applies: reads run without a transaction (each SELECT sees a consistent WAL snapshot and
        # blocks no one, and a read-only reply saves the BEGIN round trip to the driver thread), and it
        # opens one before the first INSERT/UPDATE/DELETE, so even a write that skipped begin_write is atomic.
        if conn.get_execution_options().get(_WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def begin_write(session: AsyncSession) -> None:
    """Make sure the session's transaction may write; idempotent within a unit of work.

    On SQLite an open read transaction is ended first (its snapshot could not become a writer), and the
    new transaction takes the write lock at once. On PostgreSQL row locks and constraints do that job.
    """
    if session.bind is None or session.bind.dialect.name != "sqlite":
        return
    if session.in_transaction():
        connection = await session.connection()
        if connection.sync_connection is not None and connection.sync_connection.get_execution_options().get(_WRITE):
            return
        await session.commit()
    await session.connection(execution_options={_WRITE: True})
