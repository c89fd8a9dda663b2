"""SQLite for one process: the driver runs in the event loop's thread, and writers queue on an asyncio lock.

aiosqlite hands every cursor, execute, fetch and close to a worker thread and back. For the millisecond-sized
statements a loyalty bot runs, those hand-offs (and the GIL contention of one thread per pooled connection)
cost several times the queries themselves: they made /balance three times as expensive as replying alone.
So the aiosqlite connection used here does its work inline. Two rules make that safe:

- Nothing may wait on SQLite's file lock inside the loop, or a writer would block the very loop that the
  lock holder needs to finish. Writers in this process therefore take an ``asyncio.Lock`` before
  ``BEGIN IMMEDIATE`` (``begin_write``) and release it when their transaction ends; another process holding
  the lock (``loyalty migrate``, a second tool) is waited for by ``busy_timeout``, briefly, as before.
- Reads run outside transactions (pysqlite's default handling), each SELECT on a WAL snapshot, so they
  never wait for writers.

The inline connection stands on aiosqlite's internals (``inline_problem`` lists them). Should a release of
aiosqlite change them, engines get aiosqlite's own connections, with their worker threads, and the fallback is
counted and logged (``storage.fallbacks``).
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import threading
import weakref
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from storage.fallbacks import SQLITE_INLINE_TX, library, took_fallback

WRITE_OPTION = "loyalty_write"
_HOLDS_LOCK = "loyalty_holds_write_lock"
_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()
_READERS: weakref.WeakKeyDictionary[Engine, sqlite3.Connection] = weakref.WeakKeyDictionary()
_FILES: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


class _Inline:
    """Stands in for aiosqlite's queue to its worker thread: runs each job at once, in the caller's thread."""

    def put_nowait(self, job: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = job
        try:
            result = function()
        except BaseException as exc:  # the future carries it to the awaiting caller, as the thread would
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    def __init__(self, connector: Callable[[], Any], iter_chunk_size: int = 64) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _Inline()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    def __await__(self) -> Any:  # no worker thread to start
        return self._connect().__await__()


def _never_called() -> sqlite3.Connection:
    raise AssertionError("a probe connection is never opened")


@cache
def inline_problem(connection_class: type[aiosqlite.Connection] = aiosqlite.Connection) -> str | None:
    """Why ``InlineConnection`` cannot replace ``connection_class``'s worker thread, or None when it can.

    It relies on these internals of aiosqlite's ``Connection``: every job goes through ``_execute`` (replaced) or
    is put on ``_tx`` as ``(future, function)`` (``_connect``, ``stop``, and SQLAlchemy's isolation level setter
    do that), ``_running`` and ``_connection`` tell whether it is open, and only ``__await__`` starts the thread.
    Were ``_tx`` renamed, say, opening a connection would wait forever for a thread that was never started; so
    this is checked before an engine is made, not discovered by a hang.
    """
    try:
        probe = connection_class(_never_called, 64)  # builds the queue (and an idle thread object), opens nothing
    except Exception as exc:
        return f"Connection(connector, iter_chunk_size) raised {exc!r}"
    problems = [f"no attribute {name}" for name in ("_tx", "_running", "_connection") if not hasattr(probe, name)]
    if hasattr(probe, "_tx") and not callable(getattr(probe._tx, "put_nowait", None)):
        problems.append(f"_tx is a {type(probe._tx).__name__}, without put_nowait")
    for name in ("_execute", "_connect"):
        if not inspect.iscoroutinefunction(getattr(connection_class, name, None)):
            problems.append(f"no coroutine method {name}")
    return "; ".join(problems) or None


def _threaded(connector: Callable[[], sqlite3.Connection]) -> aiosqlite.Connection:
    """aiosqlite's own connection, when the inline one cannot be used."""
    connection = aiosqlite.Connection(connector, 64)
    # As SQLAlchemy does for the connections it opens itself: one never closed must not keep the process alive.
    # Before aiosqlite 0.22 the connection was the thread.
    thread = getattr(connection, "_thread", connection)
    if isinstance(thread, threading.Thread):
        thread.daemon = True
    return connection


def _open(database: str) -> sqlite3.Connection:
    connection = sqlite3.connect(database, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


def make_sqlite_engine(url: str, **kwargs: Any) -> AsyncEngine:
    database = url.split(":///", 1)[1] if ":///" in url else ":memory:"

    problem = inline_problem()  # before any connection: a wrong guess would hang the first one

    async def connect() -> aiosqlite.Connection:
        if problem is None:
            return await InlineConnection(partial(_open, database))
        took_fallback(SQLITE_INLINE_TX, f"{library('aiosqlite')}: {problem}")
        return await _threaded(partial(_open, database))

    engine = create_async_engine(url, async_creator=connect, **kwargs)
    lock = asyncio.Lock()
    _WRITE_LOCKS[engine.sync_engine] = lock
    if database != ":memory:" and not database.startswith("file:"):  # else only the pool's connections see it
        _FILES[engine.sync_engine] = database

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def _release(info: dict[Any, Any]) -> None:
        if info.pop(_HOLDS_LOCK, False):
            lock.release()

    @event.listens_for(engine.sync_engine, "commit")
    def _on_commit(conn: Connection) -> None:
        _release(conn.info)

    @event.listens_for(engine.sync_engine, "rollback")
    def _on_rollback(conn: Connection) -> None:
        _release(conn.info)

    @event.listens_for(engine.sync_engine, "engine_disposed")
    def _on_dispose(engine: Engine) -> None:
        connection = _READERS.pop(engine, None)
        if connection is not None:
            connection.close()

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Safety net: a connection returned or invalidated mid-transaction must not keep the lock.
        _release(record.info)

    return engine


def reader(engine: Engine) -> sqlite3.Connection | None:
    """The connection this process reads on outside units of work, opened on first use.

    One is enough: a read runs to its end without giving up the loop, so two never overlap, and outside a
    transaction each statement reads the latest commit (its own WAL snapshot), so sharing it mixes nothing.
    It spares those reads a pool checkout and SQLAlchemy's greenlet hand-offs, which cost more than the read."""
    connection = _READERS.get(engine)
    if connection is None and engine in _FILES:  # not for a database named by URI, or an engine made elsewhere
        connection = _READERS[engine] = _open(_FILES[engine])
    return connection


async def begin_write(session: AsyncSession) -> None:
    """See ``storage.database.begin_write``."""
    if session.in_transaction():
        connection = await session.connection()
        if connection.sync_connection is not None and connection.sync_connection.info.get(_HOLDS_LOCK):
            return
        # A read "transaction" holds no SQLite transaction (see the module doc): ending it is free.
        await session.commit()
    bind = session.bind
    lock = _WRITE_LOCKS.get(bind.sync_engine) if isinstance(bind, AsyncEngine) else None
    if lock is None:
        await session.connection(execution_options={WRITE_OPTION: True})
        return
    await lock.acquire()
    try:
        connection = await session.connection(execution_options={WRITE_OPTION: True})
    except BaseException:
        lock.release()
        raise
    assert connection.sync_connection is not None
    connection.sync_connection.info[_HOLDS_LOCK] = True
