"""Engine and session factory for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Select, event, exc, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.fallbacks import PREPARED_READ, took_fallback
from storage.postgres import attach_readers
from storage.postgres import readers as pg_readers
from storage.sqlite import WRITE_OPTION, make_sqlite_engine
from storage.sqlite import begin_write as sqlite_begin_write
from storage.sqlite import reader as sqlite_reader

SessionFactory = async_sessionmaker[AsyncSession]
# What handlers hold and pass to loyalty/ functions, named so they never need to import SQLAlchemy.
DbSession = AsyncSession


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database that does not exist yet (opening it would create an empty one), else None."""
    if not is_sqlite(url):
        return None
    path = make_url(url).database
    if not path or path == ":memory:" or Path(path).exists():
        return None
    return path


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


POOL_SIZE = 20
"""Connections a process keeps open; LOYALTY_DATABASE_POOL_SIZE."""
POOL_OVERFLOW = 10
"""Extra connections for a burst beyond the pool, closed again when returned."""
CONNECT_TIMEOUT = 5.0
"""Seconds to open a PostgreSQL connection, or to wait for a pooled one; LOYALTY_DATABASE_CONNECT_TIMEOUT."""
STATEMENT_TIMEOUT = 10.0
"""Seconds one statement may take; LOYALTY_DATABASE_STATEMENT_TIMEOUT."""


def make_engine(
    url: str,
    *,
    pool_size: int = POOL_SIZE,
    connect_timeout: float = CONNECT_TIMEOUT,
    statement_timeout: float = STATEMENT_TIMEOUT,
    **kwargs: Any,
) -> AsyncEngine:
    """An engine whose sessions read without a transaction and write only inside ``begin_write``.

    Most updates only read (who is this, what is their balance); sparing them BEGIN and ROLLBACK halves their
    round trips to PostgreSQL. Writes get a real transaction from ``begin_write``, and a write attempted
    outside one is refused rather than silently autocommitted statement by statement.
    """
    # Connections beyond the pool are opened for a burst and closed on return, so a pool smaller than the
    # statements usually in flight opens and closes connections all the time: with 10 kept, while updates held
    # theirs until their reply was answered, a load test at 200 updates a second opened 370 PostgreSQL sessions
    # in 30 s, each a forked backend, and that work arrived exactly when the workers were already behind.
    kwargs = {"pool_size": pool_size, "max_overflow": POOL_OVERFLOW, **kwargs}
    if is_sqlite(url):
        return make_sqlite_engine(url, **kwargs)
    # A server that accepts connections but never answers would otherwise hold every update for asyncpg's
    # default 60 s, past the 55 s after which aiogram acknowledges a webhook unhandled: fail fast instead, so
    # the member hears an apology and Telegram redelivers.
    connect_args = {"timeout": connect_timeout, "command_timeout": statement_timeout}
    # No pool_pre_ping: it costs a round trip on every checkout, i.e. on every update. A connection broken by
    # a server restart fails one unit of work instead, is invalidated, and the pool replaces it.
    engine = create_async_engine(
        url,
        pool_recycle=1800,
        pool_timeout=connect_timeout,
        isolation_level="AUTOCOMMIT",
        connect_args=connect_args,
        **kwargs,
    )
    # Single reads outside a unit of work (most of what updates read) get as many connections again, opened
    # as concurrent reads need them: a read that waits for a connection holds up its whole update.
    attach_readers(engine.sync_engine, pool_size, connect_args)

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _writes_need_a_transaction(
        conn: Connection, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
    ) -> None:
        writing = context is not None and (context.isinsert or context.isupdate or context.isdelete)
        if writing and not conn.get_execution_options().get(WRITE_OPTION):
            raise WriteOutsideTransaction(f"call begin_write() before writing: {statement[:80]}")

    return engine


def is_unavailable(error: BaseException) -> bool:
    """The database (or the network to it) did not answer in time: worth trying again later, not a bug."""
    if isinstance(error, TimeoutError | OSError | exc.TimeoutError):  # OSError: connection refused or reset
        return True
    if isinstance(error, exc.DBAPIError):
        return error.connection_invalidated or isinstance(error, exc.OperationalError | exc.InterfaceError)
    return False


class WriteOutsideTransaction(RuntimeError):
    """A programming error: a write must be part of a unit of work opened with ``begin_write``."""


async def ping(sessions: SessionFactory) -> None:
    """The database answers (readiness probes)."""
    async with sessions() as session:
        await session.execute(text("SELECT 1"))


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


async def begin_snapshot(session: AsyncSession) -> None:
    """Read several statements as of one moment (an export's files then agree with each other). PostgreSQL also
    needs the transaction for a server-side cursor; on SQLite a read sees one snapshot per statement anyway."""
    if session.bind is None or session.bind.dialect.name != "postgresql":
        return
    if session.in_transaction():
        await session.commit()
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


async def release_idle(session: AsyncSession) -> None:
    """Give the session's connection back to the pool if nothing later depends on it: the session has only
    read, outside any transaction (autocommit on PostgreSQL, a snapshot per statement on SQLite), and holds no
    pending changes. The session takes a connection again if it is used afterwards; loaded objects stay.

    An update that kept its connection while Telegram answered its reply held it ten times longer than its
    queries took, so a worker needed a connection per update in flight: beyond the pool, each was opened and
    closed again for a single update.
    """
    if not session.in_transaction() or session.new or session.deleted or session.dirty:
        return
    connection = (await session.connection()).sync_connection
    if connection is None:
        return
    options = connection.get_execution_options()
    if options.get(WRITE_OPTION) or "isolation_level" in options:  # a write or a snapshot: keep it
        return
    if getattr(connection.connection.driver_connection, "in_transaction", False):
        return  # SQLite's driver began one for a write made outside begin_write: the caller decides its fate
    await session.commit()  # ends no database transaction: there is none


async def insert_once(session: AsyncSession, model: type[Any], **values: Any) -> bool:
    """INSERT a row unless it would break a UNIQUE constraint; True if it was inserted.

    Unlike catching IntegrityError this leaves the surrounding unit of work usable, which matters when a
    duplicate is expected (a second visit through the same link) and the rest of the work must still commit.
    """
    dialect = postgresql if session.bind is not None and session.bind.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model).values(**values).on_conflict_do_nothing()
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


class PreparedRead:
    """A prebuilt SELECT compiled once per dialect and run straight on the driver's connection.

    On the hottest reads (who sent this update, what is their balance) SQLAlchemy's execution layer (greenlet
    hand-offs, an execution context, result wrapping) costs several times the query itself: about 0.2 ms of
    a 0.25 ms read on SQLite, and half of one on PostgreSQL. The statement's own bind and result types still
    convert the values, so rows come back as SQLAlchemy would return them.

    It reads what the session's unit of work would. A session that has not begun one has nothing of its own
    to see, so the read borrows a connection just for the statement instead of making the session take one:
    on SQLite this process's reading connection (``storage.sqlite.reader``), on PostgreSQL one of the engine's
    readers (``storage.postgres.Readers``), in one statement with the same reads other updates ask for at once.
    Its statement should return at most one row (a lookup by key).
    A session that has begun reads on its own connection. Inside a write transaction, for a statement whose
    types need the driver's column types, or when the driver raises, SQLAlchemy runs it instead: it then owns
    the transaction, the error's translation and the invalidation of a broken connection. The last case is
    counted and logged as a fallback (``storage.fallbacks``): a broken connection now and then is expected,
    a steady rate means the driver's path no longer works with the installed SQLAlchemy or driver.
    """

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._plans: dict[Dialect, _Plan | None] = {}

    async def first(self, session: AsyncSession, params: Mapping[str, Any]) -> Sequence[Any] | None:
        if not session.in_transaction() and isinstance(session.bind, AsyncEngine):
            return await self._first_borrowed(session.bind, params)
        connection = await session.connection()
        sync = connection.sync_connection
        assert sync is not None
        plan = self._plan(sync.dialect)
        if plan is not None and not sync.get_execution_options().get(WRITE_OPTION):
            try:
                return await plan.first(sync.connection.driver_connection, params)
            except Exception as error:  # run again below, where SQLAlchemy handles it
                took_fallback(PREPARED_READ, error)
        return (await connection.execute(self.statement, params)).first()

    async def _first_borrowed(self, engine: AsyncEngine, params: Mapping[str, Any]) -> Sequence[Any] | None:
        plan = self._plan(engine.dialect)
        if plan is not None:
            try:
                if plan.asyncpg:
                    if (lender := pg_readers(engine.sync_engine)) is not None:
                        return plan.row(await lender.fetchrow(plan.sql, plan.args(params)))
                elif (reader := sqlite_reader(engine.sync_engine)) is not None:
                    return plan.first_sync(reader, params)
            except Exception as error:  # run again below, where SQLAlchemy handles it
                took_fallback(PREPARED_READ, error)
        async with engine.connect() as connection:
            return (await connection.execute(self.statement, params)).first()

    def _plan(self, dialect: Dialect) -> _Plan | None:
        try:
            return self._plans[dialect]
        except KeyError:
            plan = self._plans[dialect] = _Plan.compile(self.statement, dialect)
            return plan


@dataclass(frozen=True)
class _Plan:
    sql: str
    names: tuple[str, ...]
    """Parameter names in the order the driver takes them."""
    fixed: dict[str, Any]
    """Values the statement itself binds (literals such as a punch card's key), converted for the driver."""
    to_db: dict[str, Callable[[Any], Any]]
    from_db: tuple[Callable[[Any], Any] | None, ...]
    asyncpg: bool

    @classmethod
    def compile(cls, statement: Select[Any], dialect: Dialect) -> _Plan | None:
        if dialect.driver not in ("aiosqlite", "asyncpg"):
            return None
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            return None
        names = tuple(compiled.positiontup)
        fixed: dict[str, Any] = {}
        to_db: dict[str, Callable[[Any], Any]] = {}
        for name in set(names):
            bind = compiled.binds[name]
            if bind.expanding or bind.callable is not None:
                return None
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                to_db[name] = process
            if not bind.required:
                fixed[name] = bind.value if process is None else process(bind.value)
        from_db = []
        for column in statement.selected_columns:
            try:
                from_db.append(column.type.dialect_impl(dialect).result_processor(dialect, None))
            except exc.SQLAlchemyError:  # e.g. asyncpg's NUMERIC, which needs the column's type from the driver
                return None
        return cls(compiled.string, names, fixed, to_db, tuple(from_db), dialect.driver == "asyncpg")

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        # Once per name: SQLite's placeholders repeat a parameter wherever the statement uses it.
        values = dict(self.fixed)
        for name, value in params.items():
            process = self.to_db.get(name)
            values[name] = value if process is None else process(value)
        return [values[name] for name in self.names]

    def row(self, raw: Sequence[Any] | None) -> Sequence[Any] | None:
        if raw is None:
            return None
        return tuple(
            value if process is None else process(value) for value, process in zip(raw, self.from_db, strict=True)
        )

    async def first(self, driver: Any, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """On the driver's connection: asyncpg's, or aiosqlite's (a session's own connection)."""
        if self.asyncpg:
            return self.row(await driver.fetchrow(self.sql, *self.args(params)))
        async with driver.execute(self.sql, self.args(params)) as cursor:
            return self.row(await cursor.fetchone())

    def first_sync(self, connection: sqlite3.Connection, params: Mapping[str, Any]) -> Sequence[Any] | None:
        return self.row(connection.execute(self.sql, self.args(params)).fetchone())
