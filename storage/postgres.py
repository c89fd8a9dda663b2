"""PostgreSQL: the connections that reads outside a unit of work are lent."""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool, PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from storage.fallbacks import PG_READ_BATCH, took_fallback

_PLACEHOLDER = re.compile(r"\$(\d+)\b")
_READERS: weakref.WeakKeyDictionary[Engine, Readers] = weakref.WeakKeyDictionary()

_Batch = list[tuple[Sequence[Any], "asyncio.Future[Any]"]]
"""Reads of one statement waiting for the same round trip: each one's parameters and where its row goes."""

_LOST = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError)
"""Errors that say the connection (or the server) went away, not that the statement sent was wrong."""


class Readers:
    """asyncpg connections for single-row reads (``storage.database.PreparedRead``), lent last in, first out.

    Borrowing a session pool connection for one statement costs a greenlet hand-off, a checkout, a reset and a
    checkin, which together cost more than the statement: /balance through the full stack ran about 40 % faster
    with these than through SQLAlchemy's connection. They are opened as concurrent reads need them, up to
    ``size``, through an engine of their own for the same URL (so with SQLAlchemy's connect-time setup), and
    stay open.

    Reads of the same statement asked for in the same turn of the event loop go to the server together, as one
    statement (``_fetch_batch``). Updates arrive together (a page of getUpdates, a burst of webhooks), and each
    round trip costs the bot more CPU than the row it brings back: with 32 updates in flight, /balance through
    the full stack went from 0.47-0.50 of a bare handler's rate to 0.58-0.60. A read alone waits one turn of
    the loop for company.

    The batch rewrites the statement SQLAlchemy compiled, relying on how it renders parameters (``$n``, and no
    ``$`` anywhere else). When a batch fails where the same reads, each on its own, then succeed, the rewrite is
    what fails: that statement's reads are sent one by one from then on, each time counted and logged as a
    fallback (``storage.fallbacks``). A batch that fails because its connection was lost is not held against
    the statement: its reads run again through SQLAlchemy (``storage.database.PreparedRead``), as a lone read's.
    """

    def __init__(self, engine: Engine, size: int, connect_args: dict[str, Any] | None = None) -> None:
        # NullPool: the connections are kept here, not in a pool; one returned there is closed.
        self._engine = create_async_engine(
            engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args=connect_args or {}
        ).sync_engine
        self._idle: list[PoolProxiedConnection] = []
        self.size = size
        self._slots = asyncio.Semaphore(size)
        self._gathering: dict[str, _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()
        self._batch_sql: dict[str, str | None] = {}
        """Each statement's batched form; None for one whose batches failed where its reads alone did not."""

    async def fetchrow(self, sql: str, args: Sequence[Any]) -> Any:
        """The statement's first row (it should have at most one: a lookup by key), or None."""
        loop = asyncio.get_running_loop()
        batch = self._gathering.get(sql)
        if batch is None:
            batch = self._gathering[sql] = []
            loop.call_soon(self._send, sql)  # runs after every callback this turn has ready
        row: asyncio.Future[Any] = loop.create_future()
        batch.append((args, row))
        return await row

    def _send(self, sql: str) -> None:
        task = asyncio.ensure_future(self._answer(sql, self._gathering.pop(sql)))
        self._sending.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._sending.discard)

    async def _answer(self, sql: str, batch: _Batch) -> None:
        try:
            outcomes = await self._outcomes(sql, batch)
        except asyncio.CancelledError:
            for _args, waiting in batch:
                waiting.cancel()
            raise
        for (_args, waiting), outcome in zip(batch, outcomes, strict=True):
            if waiting.done():  # its update may have been cancelled meanwhile
                continue
            if isinstance(outcome, BaseException):  # that read then runs again through SQLAlchemy (PreparedRead)
                waiting.set_exception(outcome)
            else:
                waiting.set_result(outcome)

    async def _outcomes(self, sql: str, batch: _Batch) -> list[Any]:
        """Each read's first row, or the exception that kept it from one."""
        if len(batch) == 1:
            try:
                return [await self._fetchrow(sql, batch[0][0])]
            except Exception as exc:
                return [exc]
        if self._batch_sql.get(sql, "") is None:
            took_fallback(PG_READ_BATCH, f"{len(batch)} reads one by one; their statement does not batch: {sql}")
            return await self._each(sql, batch)
        lost = True  # until the statement has reached a connection

        async def batched(connection: Any) -> list[Any]:
            nonlocal lost
            try:
                return await self._fetch_batch(connection, sql, batch)
            except Exception as exc:
                # Depending on when asyncpg noticed, a lost connection raises an InterfaceError (the class of a wrong
                # count of arguments too), an InternalClientError or a ConnectionDoesNotExistError: ask the connection.
                lost = isinstance(exc, _LOST) or connection.is_closed()
                raise

        try:
            return await self._on_reader(batched)
        except Exception as exc:
            if lost:
                return [exc] * len(batch)
            failed = exc
        outcomes = await self._each(sql, batch)
        if not any(isinstance(outcome, BaseException) for outcome in outcomes):  # the rewrite is at fault
            self._batch_sql[sql] = None
        later = ", as they will from now on" if self._batch_sql.get(sql, "") is None else ""
        took_fallback(
            PG_READ_BATCH, f"a batch of {len(batch)} failed ({failed!r}); its reads ran one by one{later}: {sql}"
        )
        return outcomes

    async def _each(self, sql: str, batch: _Batch) -> list[Any]:
        """The reads one by one, as many at a time as there are readers."""
        return await asyncio.gather(*(self._fetchrow(sql, args) for args, _waiting in batch), return_exceptions=True)

    async def _fetchrow(self, sql: str, args: Sequence[Any]) -> Any:
        return await self._on_reader(lambda connection: connection.fetchrow(sql, *args))

    async def _on_reader(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        """``work`` on a lent asyncpg connection."""
        async with self._slots:
            connection = self._idle.pop() if self._idle else await greenlet_spawn(self._engine.raw_connection)
            try:
                result = await work(connection.driver_connection)
            except BaseException:
                # Broken, or left mid-statement by a cancellation: dropped; the next read opens another.
                await greenlet_spawn(connection.invalidate)
                raise
            self._idle.append(connection)
            return result

    async def _fetch_batch(self, connection: Any, sql: str, batch: _Batch) -> list[Any]:
        """Each read's first row, from one statement: the read's statement joined laterally to its parameter sets
        (one array per parameter, unnested together and numbered), so every set keeps its own values."""
        many = self._batch_sql.get(sql)
        if many is None:  # the parameters' types, as the server inferred them for the statement
            types = (await connection.prepare(sql)).get_parameters()
            arrays = ", ".join(f"${i}::{kind.schema}.{kind.name}[]" for i, kind in enumerate(types, 1))
            names = ", ".join(f"p{i}" for i in range(1, len(types) + 1))
            # The compiled statements hold no literal "$n" (values are bound), so every match is a placeholder.
            inner = _PLACEHOLDER.sub(lambda match: f"k.p{match.group(1)}", sql)
            many = self._batch_sql[sql] = (
                f"SELECT k.n, q.* FROM unnest({arrays}) WITH ORDINALITY AS k({names}, n) "
                f"CROSS JOIN LATERAL ({inner}) AS q"
            )
        columns = [list(values) for values in zip(*(args for args, _waiting in batch), strict=True)]
        first: dict[int, Any] = {}
        for record in await connection.fetch(many, *columns):
            first.setdefault(record[0], tuple(record)[1:])
        return [first.get(n) for n in range(1, len(batch) + 1)]

    def close(self) -> None:
        """In SQLAlchemy's greenlet, as ``Engine.dispose`` runs its listeners."""
        while self._idle:
            self._idle.pop().close()
        self._engine.dispose()


def attach_readers(engine: Engine, size: int, connect_args: dict[str, Any] | None = None) -> None:
    _READERS[engine] = Readers(engine, size, connect_args)

    @event.listens_for(engine, "engine_disposed")
    def _renew(engine: Engine) -> None:  # a disposed engine stays usable with new connections, as its pool does
        _READERS[engine].close()
        _READERS[engine] = Readers(engine, size, connect_args)


def readers(engine: Engine) -> Readers | None:
    """The engine's readers; None for an engine ``storage.database.make_engine`` did not make."""
    return _READERS.get(engine)
