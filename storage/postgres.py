"""PostgreSQL: the connections that reads outside a unit of work are lent."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool, PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

_READERS: weakref.WeakKeyDictionary[Engine, Readers] = weakref.WeakKeyDictionary()


class Readers:
    """asyncpg connections for single-statement reads (``storage.database.PreparedRead``), lent last in, first out.

    Borrowing a session pool connection for one statement costs a greenlet hand-off, a checkout, a reset and a
    checkin, which together cost more than the statement: /balance through the full stack ran about 40 % faster
    with these than through SQLAlchemy's connection. They are opened as concurrent reads need them, up to
    ``size``, through an engine of their own for the same URL (so with SQLAlchemy's connect-time setup), and
    stay open.
    """

    def __init__(self, engine: Engine, size: int) -> None:
        # NullPool: the connections are kept here, not in a pool; one returned there is closed.
        self._engine = create_async_engine(engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT").sync_engine
        self._idle: list[PoolProxiedConnection] = []
        self.size = size
        self._slots = asyncio.Semaphore(size)

    async def fetchrow(self, sql: str, args: Sequence[Any]) -> Any:
        async with self._slots:
            connection = self._idle.pop() if self._idle else await greenlet_spawn(self._engine.raw_connection)
            try:
                row = await connection.driver_connection.fetchrow(sql, *args)  # type: ignore[union-attr]
            except BaseException:
                # Broken, or left mid-statement by a cancellation: dropped; the next read opens another.
                await greenlet_spawn(connection.invalidate)
                raise
            self._idle.append(connection)
            return row

    def close(self) -> None:
        """In SQLAlchemy's greenlet, as ``Engine.dispose`` runs its listeners."""
        while self._idle:
            self._idle.pop().close()
        self._engine.dispose()


def attach_readers(engine: Engine, size: int) -> None:
    _READERS[engine] = Readers(engine, size)

    @event.listens_for(engine, "engine_disposed")
    def _renew(engine: Engine) -> None:  # a disposed engine stays usable with new connections, as its pool does
        _READERS[engine].close()
        _READERS[engine] = Readers(engine, size)


def readers(engine: Engine) -> Readers | None:
    """The engine's readers; None for an engine ``storage.database.make_engine`` did not make."""
    return _READERS.get(engine)
