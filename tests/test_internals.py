"""The libraries' private internals that the fast paths use, and the plain ways taken when they are gone.

A test named ``..._still_...`` fails when a release of the library removed or changed what a fast path uses:
then read the fast path's module, and either adapt it or leave the fallback (tested below it) to do the work
and keep the version bound in ``pyproject.toml`` where it is. Each fallback must give the same results, and be
counted (``loyalty_fast_path_fallbacks_total``) and logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods import SendMessage
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from apscheduler.executors.asyncio import AsyncIOExecutor
from prometheus_client import REGISTRY
from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

import scheduler.service
import storage.postgres
from bot.session import JsonSession, keeps_values
from emulator import FakeTelegram
from loyalty.account import _columns, _params, _summary_statement
from loyalty.members import _MEMBER_AND_GRANT
from loyalty.program import Program
from scheduler.service import Job, Scheduler
from storage import fallbacks
from storage.database import PreparedRead, SessionFactory, _Plan, make_engine, make_session_factory
from storage.fallbacks import library
from storage.models import Member
from storage.postgres import readers as pg_readers
from storage.sqlite import InlineConnection, inline_problem
from tests.conftest import PG_URL
from tests.test_storage import _count_statements, _join

NOW = datetime(2026, 11, 22, tzinfo=UTC)
KEYBOARD = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="页 2 ›", callback_data="hist:2")]])
_POINTS = PreparedRead(select(col(Member.points)).where(col(Member.id) == bindparam("member_id")))
_PG_ONLY = [
    pytest.mark.skipif(not PG_URL, reason="needs LOYALTY_TEST_DATABASE_URL (PostgreSQL)"),
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]


def _count(path: str) -> float:
    value = REGISTRY.get_sample_value("loyalty_fast_path_fallbacks_total", {"path": path})
    assert value is not None, f"no series for path {path!r}: storage.fallbacks must create every path's series"
    return value


def _logged(caplog: pytest.LogCaptureFixture, path: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "storage.fallbacks" and r.levelno == logging.WARNING and f"fast path {path} " in r.getMessage()
    ]


@pytest.fixture(autouse=True)
def _fresh_log_limit(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    fallbacks.reset_log_limit()  # each test sees the first log line of its own fallback
    caplog.set_level(logging.WARNING, logger="storage.fallbacks")
    yield
    fallbacks.reset_log_limit()


def test_a_fallback_is_counted_every_time_and_logged_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _count(fallbacks.PREPARED_READ)
    fallbacks.took_fallback(fallbacks.PREPARED_READ, RuntimeError("first"))
    fallbacks.took_fallback(fallbacks.PREPARED_READ, "second")
    assert _count(fallbacks.PREPARED_READ) == before + 2
    assert _logged(caplog, fallbacks.PREPARED_READ) == [
        "fast path prepared_read not taken, the plain way ran instead (RuntimeError: first)"
    ]
    monkeypatch.setattr(fallbacks, "LOG_EVERY", 0.0)
    fallbacks.took_fallback(fallbacks.PREPARED_READ, "third")
    assert _logged(caplog, fallbacks.PREPARED_READ)[-1].endswith("(third); 1 more since the last report")


# --- aiosqlite: storage.sqlite.InlineConnection replaces Connection._tx and runs every job in the loop's thread


async def test_aiosqlite_still_has_what_the_inline_connection_replaces(tmp_path: Path) -> None:
    problem = inline_problem()
    assert problem is None, f"{library('aiosqlite')}: {problem}; storage.sqlite.InlineConnection cannot be used"
    connection = InlineConnection(lambda: sqlite3.connect(tmp_path / "inline.db"))
    try:
        async with asyncio.timeout(5):
            await connection
    except TimeoutError:
        pytest.fail(f"{library('aiosqlite')}: opening a connection no longer goes through Connection._tx")
    try:
        assert isinstance(connection._tx, storage.sqlite._Inline), f"{library('aiosqlite')} replaced _tx itself"
        await connection.execute("CREATE TABLE t (x)")
        await connection.execute("INSERT INTO t VALUES (1)")
        await connection.commit()
        async with connection.execute("SELECT x FROM t") as cursor:
            assert await cursor.fetchall() == [(1,)]
        thread = getattr(connection, "_thread", connection)
        assert not (isinstance(thread, threading.Thread) and thread.is_alive()), (
            f"{library('aiosqlite')} started its worker thread for an inline connection"
        )
    finally:
        await connection.close()


async def test_sqlalchemy_sets_the_isolation_level_through_the_inline_tx(tmp_path: Path) -> None:
    """SQLAlchemy's aiosqlite adapter puts its job on ``_tx`` itself, bypassing ``_execute``."""
    before = _count(fallbacks.SQLITE_INLINE_TX)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'iso.db'}")
    try:
        async with asyncio.timeout(5), engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            assert (await autocommit.execute(text("SELECT 1"))).scalar_one() == 1
            raw = await connection.get_raw_connection()
            assert isinstance(raw.driver_connection, InlineConnection)
            assert raw.driver_connection.isolation_level is None  # what AUTOCOMMIT sets, inline
    finally:
        await engine.dispose()
    assert _count(fallbacks.SQLITE_INLINE_TX) == before


def test_inline_problem_names_what_aiosqlite_lost() -> None:
    class NoQueue(aiosqlite.Connection):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            del self._tx

    class SyncExecute(aiosqlite.Connection):
        def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            return fn(*args, **kwargs)

    class NewConstructor(aiosqlite.Connection):
        _connection = None  # what __del__ looks at when __init__ refused its arguments

        def __init__(self, database: str) -> None:
            super().__init__(lambda: sqlite3.connect(database), 64)

    assert inline_problem(NoQueue) == "no attribute _tx"
    assert inline_problem(SyncExecute) == "no coroutine method _execute"
    assert "Connection(connector, iter_chunk_size) raised TypeError" in (inline_problem(NewConstructor) or "")


async def test_without_the_inline_tx_sqlite_connections_use_aiosqlites_thread_and_still_read_and_write(
    tmp_path: Path,
    sqlite_template: Path,
    program: Program,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(storage.sqlite, "inline_problem", lambda: "simulated: no attribute _tx")
    before = _count(fallbacks.SQLITE_INLINE_TX)
    path = tmp_path / "threaded.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        sessions = make_session_factory(engine)
        async with asyncio.timeout(10):
            members = await _join(sessions, program, 2)  # writes, under begin_write
            async with sessions() as session:
                await session.execute(select(1))  # the session's own connection, so PreparedRead reads on it
                raw = (await session.connection()).sync_connection
                assert raw is not None
                driver = raw.connection.driver_connection
                assert type(driver) is aiosqlite.Connection  # aiosqlite's own, with its worker thread
                thread = getattr(driver, "_thread", driver)
                assert isinstance(thread, threading.Thread) and thread.is_alive() and thread.daemon
                assert await _POINTS.first(session, {"member_id": members[2].id}) == (50,)
    finally:
        await engine.dispose()
    assert _count(fallbacks.SQLITE_INLINE_TX) >= before + 1  # one for each connection the pool opened
    assert any("aiosqlite 0." in m and "simulated: no attribute _tx" in m for m in _logged(caplog, "sqlite_inline_tx"))


# --- APScheduler: Scheduler.stop waits for the runs in AsyncIOExecutor._pending_futures

FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
"""The scheduler's clock in these tests: no job falls due by itself, each run is submitted by the test."""


def _slow_job(started: asyncio.Event, release: asyncio.Event, finished: list[datetime]) -> Job:
    async def run(now: datetime) -> int:
        started.set()
        await release.wait()
        finished.append(now)
        return 0

    return Job("slow", timedelta(hours=1), run)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_apscheduler_still_keeps_the_runs_it_started_in_pending_futures(
    sessions: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    before = _count(fallbacks.APSCHEDULER_PENDING)
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[datetime] = []
    service = Scheduler(sessions, [_slow_job(started, release, finished)], holder="t", clock=lambda: FUTURE)
    service.start()
    assert isinstance(service._executor, AsyncIOExecutor)
    aps = service._aps
    assert aps is not None
    aps_job = aps.get_job("slow")
    service._executor.submit_job(aps_job, [datetime.now(UTC)])
    pending = getattr(service._executor, scheduler.service._PENDING_FUTURES, None)
    assert isinstance(pending, set) and len(pending) == 1, (
        f"{library('apscheduler')}: AsyncIOExecutor no longer keeps the runs it started in a set "
        f"{scheduler.service._PENDING_FUTURES}; Scheduler.stop falls back to one turn of the loop"
    )
    [run] = pending
    await asyncio.wait_for(started.wait(), 5)
    assert run in service._running  # the same task: the executor's task runs run_job itself
    stopping = asyncio.create_task(service.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done() and not run.done()  # stop waits for the run
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == [FUTURE] and not run.cancelled()
    assert _count(fallbacks.APSCHEDULER_PENDING) == before and not _logged(caplog, "apscheduler_pending")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_without_pending_futures_stop_still_waits_for_a_run_that_had_not_begun(
    sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(scheduler.service, "_PENDING_FUTURES", "_renamed_by_a_later_release")
    before = _count(fallbacks.APSCHEDULER_PENDING)
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[datetime] = []
    service = Scheduler(sessions, [_slow_job(started, release, finished)], holder="t", clock=lambda: FUTURE)
    service.start()
    assert service._aps is not None and service._executor is not None
    service._executor.submit_job(service._aps.get_job("slow"), [datetime.now(UTC)])
    [run] = service._executor._pending_futures  # type: ignore[attr-defined]
    assert not service._running  # its task has not taken a step yet: only APScheduler knows of it
    asyncio.get_running_loop().call_later(0.05, release.set)
    async with asyncio.timeout(5):
        await service.stop()  # in this task, so before the run's first step (wait_for would make it a task)
    assert started.is_set() and finished == [FUTURE], "stop let APScheduler cancel a run that had not begun"
    assert run.done() and not run.cancelled()
    assert _count(fallbacks.APSCHEDULER_PENDING) == before + 1
    [line] = _logged(caplog, "apscheduler_pending")
    assert "apscheduler 3." in line and "no _renamed_by_a_later_release set" in line


# --- aiogram: JsonSession asks prepare_value for plain values with its private parameter _dumps_json


def _bot(session: AiohttpSession, tg: FakeTelegram | None = None) -> Bot:
    return Bot(token=tg.token if tg is not None else "42:TEST", session=session)


async def test_aiogram_prepare_value_still_takes_dumps_json_and_leaves_values_unencoded() -> None:
    assert keeps_values(JsonSession), (
        f"{library('aiogram')}: BaseSession.prepare_value no longer takes _dumps_json; every request goes as a form"
    )
    session = JsonSession()
    try:
        bot = _bot(session)
        value = {"keyboard": KEYBOARD, "ids": [1, None, 2]}
        assert session.prepare_value(value, bot=bot, files={}, _dumps_json=False) == {
            "keyboard": KEYBOARD.model_dump(exclude_none=True),
            "ids": [1, 2],
        }, f"{library('aiogram')}: prepare_value(_dumps_json=False) changed what it returns"
        assert isinstance(session.prepare_value(value, bot=bot, files={}), str)  # a form field: JSON text
        assert session.build_json(bot, SendMessage(chat_id=1, text="x")) is not None
    finally:
        await session.close()


def test_keeps_values_tells_a_prepare_value_without_dumps_json() -> None:
    class Renamed(JsonSession):
        def prepare_value(self, value: Any, bot: Bot, files: dict[str, Any], _as_json: bool = True) -> Any:  # type: ignore[override]
            return super().prepare_value(value, bot, files, _dumps_json=_as_json)

    class Swallowed(JsonSession):  # would take the argument, and perhaps ignore it
        def prepare_value(self, value: Any, bot: Bot, files: dict[str, Any], **options: Any) -> Any:  # type: ignore[override]
            return super().prepare_value(value, bot, files)

    assert not keeps_values(Renamed) and not keeps_values(Swallowed)


class _FormsOnly(JsonSession):
    """As if aiogram no longer named ``_dumps_json``: its own calls still work, the parameter cannot be relied on."""

    def prepare_value(self, value: Any, bot: Bot, files: dict[str, Any], **options: Any) -> Any:  # type: ignore[override]
        return super().prepare_value(value, bot, files, **options)


async def test_without_dumps_json_requests_go_as_forms_and_still_arrive_whole(
    tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    before = _count(fallbacks.AIOGRAM_JSON)
    session = _FormsOnly(api=TelegramAPIServer.from_base(tg.base_url))
    try:
        bot = _bot(session, tg)
        tg.user(4242, "Ann")
        sent = await bot.send_message(4242, "⭐ <b>50</b> 积分", parse_mode="HTML", reply_markup=KEYBOARD)
        call = tg.calls_of("sendMessage")[-1]
        assert call.content_type != "application/json"
        assert call.params["reply_markup"] == KEYBOARD.model_dump(exclude_none=True)
        assert sent.text == "⭐ 50 积分"
    finally:
        await session.close()
    assert _count(fallbacks.AIOGRAM_JSON) == before + 1
    [line] = _logged(caplog, "aiogram_json")
    assert "aiogram 3." in line and "_dumps_json" in line


# --- SQLAlchemy and asyncpg: storage.postgres.Readers rewrites compiled statements' $n placeholders to batch them


def _batched_statements(program: Program) -> dict[str, PreparedRead]:
    """The statements the bot reads through PreparedRead, as the program shapes them (those that batch)."""
    return {"identify": _MEMBER_AND_GRANT, "summary": _summary_statement(_columns(program))}


def test_sqlalchemy_still_compiles_the_batched_reads_to_numbered_placeholders_only(program: Program) -> None:
    dialect = PGDialect_asyncpg()
    for name, read in _batched_statements(program).items():
        plan = _Plan.compile(read.statement, dialect)
        assert plan is not None, f"{library('sqlalchemy')}: {name} no longer takes PreparedRead's driver path"
        numbers = {int(n) for n in storage.postgres._PLACEHOLDER.findall(plan.sql)}
        assert numbers == set(range(1, len(plan.names) + 1)), (
            f"{library('sqlalchemy')} numbers {name}'s parameters otherwise than $1..${len(plan.names)}: {plan.sql}"
        )
        rest = storage.postgres._PLACEHOLDER.sub("", plan.sql)
        assert "$" not in rest and "POSTCOMPILE" not in rest, (
            f"{library('sqlalchemy')} renders a $ that is not a placeholder in {name}; "
            f"storage.postgres.Readers._fetch_batch would rewrite it: {plan.sql}"
        )


async def _read_together(sessions: SessionFactory, read: PreparedRead, params: list[dict[str, Any]]) -> list[Any]:
    async def one(values: dict[str, Any]) -> Any:
        async with sessions() as session:
            return await read.first(session, values)

    return await asyncio.gather(*(one(values) for values in params))


async def _expected(sessions: SessionFactory, read: PreparedRead, params: list[dict[str, Any]]) -> list[Any]:
    async with sessions() as session:
        rows = [(await session.execute(read.statement, values)).first() for values in params]
    return [None if row is None else tuple(row) for row in rows]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.skipif(not PG_URL, reason="needs LOYALTY_TEST_DATABASE_URL (PostgreSQL)")
async def test_postgresql_still_batches_the_reads_the_bot_makes(
    sessions: SessionFactory, program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    members = await _join(sessions, program, 3)
    summary_params = _params(program, NOW, 30)
    reads = _batched_statements(program)
    keys = {"identify": "telegram_id", "summary": "member_id"}
    before = {path: _count(path) for path in (fallbacks.PG_READ_BATCH, fallbacks.PREPARED_READ)}
    for name, read in reads.items():
        ids = [1, 404, 3, 1] if keys[name] == "telegram_id" else [members[1].id, 404, members[3].id, members[1].id]
        params = [{**(summary_params if name == "summary" else {}), keys[name]: value} for value in ids]
        expected = await _expected(sessions, read, params)
        assert expected[0] is not None and expected[1] is None
        sent = _count_statements(monkeypatch)
        assert await _read_together(sessions, read, params) == expected, name
        assert len(sent) == 1 and "unnest" in sent[0], f"{library('asyncpg')}: {name} went as {len(sent)} statements"
        monkeypatch.undo()
    assert {path: _count(path) for path in before} == before


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.skipif(not PG_URL, reason="needs LOYALTY_TEST_DATABASE_URL (PostgreSQL)")
async def test_a_batch_whose_rewrite_fails_is_answered_one_by_one_and_not_tried_again(
    sessions: SessionFactory, program: Program, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    members = await _join(sessions, program, 3)
    # As if SQLAlchemy rendered its placeholders otherwise: the statement's own $n are left, and refer to arrays.
    monkeypatch.setattr(storage.postgres, "_PLACEHOLDER", re.compile(r"\$never(\d+)"))
    params = [{"member_id": members[n].id} for n in (1, 2, 3)] + [{"member_id": 404}]
    expected = [(50,), (50,), (50,), None]
    before = {path: _count(path) for path in (fallbacks.PG_READ_BATCH, fallbacks.PREPARED_READ)}
    sent = _count_statements(monkeypatch)

    assert await _read_together(sessions, _POINTS, params) == expected
    assert len(sent) == 1 + 4 and "unnest" in sent[0] and not any("unnest" in s for s in sent[1:])
    assert _count(fallbacks.PG_READ_BATCH) == before[fallbacks.PG_READ_BATCH] + 1
    assert _count(fallbacks.PREPARED_READ) == before[fallbacks.PREPARED_READ]  # each read alone took its fast path
    [line] = _logged(caplog, "pg_read_batch")
    assert "a batch of 4 failed" in line and "as they will from now on" in line

    sent.clear()
    assert await _read_together(sessions, _POINTS, params) == expected
    assert len(sent) == 4 and not any("unnest" in s for s in sent)  # the rewrite is not sent again
    assert _count(fallbacks.PG_READ_BATCH) == before[fallbacks.PG_READ_BATCH] + 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.skipif(not PG_URL, reason="needs LOYALTY_TEST_DATABASE_URL (PostgreSQL)")
async def test_a_batch_that_loses_its_connection_is_not_held_against_the_statement(
    sessions: SessionFactory, program: Program, engine: AsyncEngine
) -> None:
    members = await _join(sessions, program, 2)
    params = [{"member_id": members[1].id}, {"member_id": members[2].id}]
    assert await _read_together(sessions, _POINTS, params) == [(50,), (50,)]
    lender = pg_readers(engine.sync_engine)
    assert lender is not None
    [reader] = lender._idle
    [sql] = lender._batch_sql
    backend = reader.driver_connection.get_server_pid()  # type: ignore[union-attr]
    async with engine.connect() as other:  # a server restart, as far as that connection can tell
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    before = {path: _count(path) for path in (fallbacks.PG_READ_BATCH, fallbacks.PREPARED_READ)}
    assert await _read_together(sessions, _POINTS, params) == [(50,), (50,)]  # through SQLAlchemy
    assert _count(fallbacks.PREPARED_READ) == before[fallbacks.PREPARED_READ] + 2
    assert _count(fallbacks.PG_READ_BATCH) == before[fallbacks.PG_READ_BATCH]
    assert isinstance(lender._batch_sql[sql], str)  # still batched


# --- PreparedRead: the driver's connection, else SQLAlchemy


async def test_a_prepared_read_whose_driver_path_fails_is_answered_through_sqlalchemy(
    sessions: SessionFactory, program: Program, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    members = await _join(sessions, program, 1)
    member_id = members[1].id

    def broken(_plan: _Plan, _params: Any) -> list[Any]:
        raise RuntimeError("simulated driver failure")

    monkeypatch.setattr(_Plan, "args", broken)
    before = _count(fallbacks.PREPARED_READ)
    async with sessions() as session:
        assert await _POINTS.first(session, {"member_id": member_id}) == (50,)  # borrowed connection
        assert await _POINTS.first(session, {"member_id": 404}) is None
        await session.execute(select(1))
        assert session.in_transaction()
        assert await _POINTS.first(session, {"member_id": member_id}) == (50,)  # the session's own connection
    assert _count(fallbacks.PREPARED_READ) == before + 3
    [line] = _logged(caplog, "prepared_read")
    assert "RuntimeError: simulated driver failure" in line
