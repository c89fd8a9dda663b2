"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.sqlite import WRITE_OPTION, make_sqlite_engine
from storage.sqlite import begin_write as sqlite_begin_write

SessionFactory = async_sessionmaker[AsyncSession]
# What handlers hold and pass to loyalty/ functions, named so they never need to import SQLAlchemy.
DbSession = AsyncSession


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine whose sessions read without a transaction and write only inside ``begin_write``.

    Most updates only read (who is this, what is their balance); sparing them BEGIN and ROLLBACK halves their
    round trips to PostgreSQL. Writes get a real transaction from ``begin_write``, and a write attempted
    outside one is refused rather than silently autocommitted statement by statement.
    """
    if is_sqlite(url):
        return make_sqlite_engine(url, **kwargs)
    # No pool_pre_ping: it costs a round trip on every checkout, i.e. on every update. A connection broken by
    # a server restart fails one unit of work instead, is invalidated, and the pool replaces it.
    engine = create_async_engine(
        url, pool_size=10, max_overflow=20, pool_recycle=1800, isolation_level="AUTOCOMMIT", **kwargs
    )

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _writes_need_a_transaction(conn: Connection, _cursor: Any, statement: str, _params: Any,
                                   context: Any, _many: bool) -> None:
        writing = context is not None and (context.isinsert or context.isupdate or context.isdelete)
        if writing and not conn.get_execution_options().get(WRITE_OPTION):
            raise WriteOutsideTransaction(f"call begin_write() before writing: {statement[:80]}")

    return engine


class WriteOutsideTransaction(RuntimeError):
    """A programming error: a write must be part of a unit of work opened with ``begin_write``."""


def make_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def begin_write(session: AsyncSession) -> None:
    """Make sure the session's transaction may write; idempotent within a unit of work.

    Call it before a unit of work's first statement. On SQLite it takes this process's write lock and the
    database's (``BEGIN IMMEDIATE``), so writers queue instead of failing when a read snapshot cannot be
    upgraded. On PostgreSQL it swaps the session's autocommit connection for one in a READ COMMITTED
    transaction; row locks and constraints do the rest.
    """
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        await sqlite_begin_write(session)
        return
    if session.in_transaction():
        connection = await session.connection()
        if connection.sync_connection is not None and connection.sync_connection.get_execution_options().get(
            WRITE_OPTION
        ):
            return
        await session.commit()  # a read "transaction" on an autocommit connection: nothing to commit
    await session.connection(execution_options={WRITE_OPTION: True, "isolation_level": "READ COMMITTED"})
