"""Storage under concurrency: writers queue instead of failing, and a failed unit of work frees the way."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Integer, bindparam, func, select, text, update
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from loyalty.ledger import Kind
from loyalty.members import join
from loyalty.program import Program
from loyalty.purchases import record_purchase
from storage.database import (
    PreparedRead,
    SessionFactory,
    WriteOutsideTransaction,
    begin_snapshot,
    begin_write,
    make_engine,
    make_session_factory,
    release_idle,
)
from storage.models import LedgerEntry, Member, Purchase
from storage.postgres import readers as pg_readers
from storage.sqlite import reader as sqlite_reader
from tests.conftest import PG_URL

NOW = datetime(2026, 11, 22, tzinfo=UTC)


async def _join(sessions: SessionFactory, program: Program, count: int) -> dict[int, Member]:
    """Members with Telegram ids 1..count, by Telegram id."""
    members = {}
    async with sessions() as session:
        for telegram_id in range(1, count + 1):
            result = await join(
                session,
                program,
                telegram_id=telegram_id,
                chat_id=telegram_id,
                first_name="Ann",
                last_name=None,
                username=None,
                language_code="en",
                payload=None,
                now=NOW,
            )
            members[telegram_id] = result.member
    return members


async def _member(sessions: SessionFactory, program: Program) -> int:
    member_id = (await _join(sessions, program, 1))[1].id
    assert member_id is not None
    return member_id


async def test_concurrent_purchases_with_replays_award_exactly_once_each(
    sessions: SessionFactory, program: Program
) -> None:
    member_id = await _member(sessions, program)

    async def buy(receipt: str) -> bool:
        async with sessions() as session:
            result = await record_purchase(
                session,
                program,
                member_id=member_id,
                amount=Decimal("10"),
                source="receipt",
                external_id=receipt,
                now=NOW,
            )
            return result.created

    receipts = [f"R-{i % 20}" for i in range(40)]  # every receipt delivered twice, all at once
    created = await asyncio.gather(*(buy(receipt) for receipt in receipts))
    assert sum(created) == 20
    async with sessions() as session:
        points = (await session.execute(select(Member.points).where(Member.id == member_id))).scalar_one()
        purchases = (await session.execute(select(func.count()).select_from(Purchase))).scalar_one()
    assert purchases == 20 and points == 50 + 20 * 10


async def test_a_failed_write_releases_the_way_for_the_next(sessions: SessionFactory, program: Program) -> None:
    member_id = await _member(sessions, program)
    with pytest.raises(RuntimeError):
        async with sessions() as session:
            await begin_write(session)
            member = await session.get(Member, member_id)
            assert member is not None
            member.first_name = "changed"
            await session.flush()
            raise RuntimeError("the handler failed mid-way")

    async def write() -> None:
        async with sessions() as session:
            await record_purchase(
                session,
                program,
                member_id=member_id,
                amount=Decimal("1"),
                source="t",
                external_id="after-failure",
                now=NOW,
            )

    await asyncio.wait_for(write(), timeout=10)
    async with sessions() as session:
        name = (await session.execute(select(Member.first_name).where(Member.id == member_id))).scalar_one()
    assert name == "Ann"


async def test_a_write_outside_a_unit_of_work_is_never_half_applied(sessions: SessionFactory, engine) -> None:
    """PostgreSQL sessions read in autocommit, so a write without begin_write is refused outright; SQLite's
    driver opens a transaction before the first write by itself, so a rollback still undoes it."""
    async with sessions() as session:
        session.add(Member(telegram_id=5, chat_id=5, code="AAAA2222"))
        if engine.dialect.name == "postgresql":
            with pytest.raises(WriteOutsideTransaction):
                await session.flush()
        else:
            await session.flush()
        await session.rollback()
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Member))).scalar_one() == 0


async def test_a_prepared_read_returns_what_sqlalchemy_returns(sessions: SessionFactory, program: Program) -> None:
    member_id = await _member(sessions, program)
    statement = select(
        col(LedgerEntry.kind),
        col(LedgerEntry.points),
        col(LedgerEntry.expires_at),
        col(LedgerEntry.created_at),
    ).where(col(LedgerEntry.member_id) == bindparam("member_id"), col(LedgerEntry.kind) == Kind.WELCOME)
    read = PreparedRead(statement)
    async with sessions() as session:
        expected = tuple((await session.execute(statement, {"member_id": member_id})).one())
        assert expected[0] == Kind.WELCOME and expected[2] is not None and expected[3] == NOW
        assert read._plan(session.get_bind().dialect) is not None  # the driver's path, not the fallback
        assert await read.first(session, {"member_id": member_id}) == expected
        assert await read.first(session, {"member_id": member_id + 1}) is None
        await begin_write(session)  # inside a write transaction SQLAlchemy runs it
        assert await read.first(session, {"member_id": member_id}) == expected


_POINTS = PreparedRead(select(col(Member.points)).where(col(Member.id) == bindparam("member_id")))


async def test_a_read_outside_a_unit_of_work_borrows_a_connection_only_for_the_statement(
    sessions: SessionFactory, program: Program, engine: AsyncEngine
) -> None:
    member_id = await _member(sessions, program)
    pool = engine.sync_engine.pool
    async with sessions() as reading, sessions() as writing:
        assert await _POINTS.first(reading, {"member_id": member_id}) == (50,)
        assert not reading.in_transaction()  # the session took no connection
        assert pool.checkedout() == 0  # type: ignore[attr-defined]

        await begin_write(writing)
        await writing.execute(update(Member).where(col(Member.id) == member_id).values(points=70))
        assert await _POINTS.first(writing, {"member_id": member_id}) == (70,)  # its own unit of work
        assert await _POINTS.first(reading, {"member_id": member_id}) == (50,)  # not yet committed
        await writing.commit()
        assert await _POINTS.first(reading, {"member_id": member_id}) == (70,)  # the latest commit
        assert await _POINTS.first(reading, {"member_id": member_id + 1}) is None
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_release_idle_gives_back_a_read_only_connection_and_keeps_a_transaction(
    sessions: SessionFactory, program: Program, engine: AsyncEngine
) -> None:
    member_id = await _member(sessions, program)
    pool = engine.sync_engine.pool
    async with sessions() as session:
        member = await session.get(Member, member_id)
        assert member is not None and pool.checkedout() == 1  # type: ignore[attr-defined]
        await release_idle(session)
        assert pool.checkedout() == 0 and not session.in_transaction()  # type: ignore[attr-defined]
        assert member.first_name == "Ann" and member in session  # what was loaded stays usable

        await begin_write(session)
        member.first_name = "Bea"
        await release_idle(session)  # pending changes and a write transaction: kept
        assert pool.checkedout() == 1 and session.in_transaction()  # type: ignore[attr-defined]
        await session.commit()
        if engine.dialect.name == "postgresql":  # an export's snapshot is kept too
            await begin_snapshot(session)
            await session.execute(select(col(Member.id)))
            await release_idle(session)
            assert pool.checkedout() == 1  # type: ignore[attr-defined]
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_the_sqlite_reader_is_closed_with_its_engine(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'reader.db'}")
    reader = sqlite_reader(engine.sync_engine)
    assert reader is not None and sqlite_reader(engine.sync_engine) is reader  # one per engine
    await engine.dispose()
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        reader.execute("SELECT 1")
    assert sqlite_reader(engine.sync_engine) is not reader  # a disposed engine opens a new one when used again
    await engine.dispose()
    by_uri = make_engine(f"sqlite+aiosqlite:///file:{tmp_path / 'reader.db'}?uri=true")
    assert sqlite_reader(by_uri.sync_engine) is None  # not a plain file: such reads go through the pool
    await by_uri.dispose()


@pytest.mark.skipif(not PG_URL, reason="needs LOYALTY_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_postgresql_reader_broken_under_a_read_is_replaced_and_the_read_still_answers(
    sessions: SessionFactory, program: Program, engine: AsyncEngine
) -> None:
    member_id = await _member(sessions, program)
    lender = pg_readers(engine.sync_engine)
    assert lender is not None
    async with sessions() as session:
        assert await _POINTS.first(session, {"member_id": member_id}) == (50,)
        [reader] = lender._idle
        backend = reader.driver_connection.get_server_pid()  # type: ignore[union-attr]
    async with engine.connect() as other:  # a server restart, as far as that connection can tell
        await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    async with sessions() as session, sessions() as other_session:
        # Asked for together, so one statement on the broken reader: each read is answered through SQLAlchemy.
        assert await asyncio.gather(
            _POINTS.first(session, {"member_id": member_id}), _POINTS.first(other_session, {"member_id": member_id})
        ) == [(50,), (50,)]
        assert await _POINTS.first(session, {"member_id": member_id}) == (50,)  # on a new reader
    [reader] = lender._idle
    assert reader.driver_connection.get_server_pid() != backend  # type: ignore[union-attr]

    await engine.dispose()  # closes them; the engine still reads afterwards, on new ones
    assert pg_readers(engine.sync_engine) is not lender and reader.dbapi_connection is None
    async with sessions() as session:
        assert await _POINTS.first(session, {"member_id": member_id}) == (50,)


# Whose row, and a value computed from a parameter of the read's own: a batch must keep each read's parameters.
_CODE_AND_POINTS_PLUS = PreparedRead(
    select(col(Member.code), col(Member.points) + bindparam("extra", type_=Integer)).where(
        col(Member.telegram_id) == bindparam("telegram_id")
    )
)


def _count_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements asyncpg sends for rows (spied on, not replaced)."""
    sent: list[str] = []
    for name in ("fetch", "fetchrow"):
        real = getattr(asyncpg.Connection, name)

        async def spy(connection: asyncpg.Connection, query: str, *args: Any, _real: Any = real, **kw: Any) -> Any:
            sent.append(query)
            return await _real(connection, query, *args, **kw)

        monkeypatch.setattr(asyncpg.Connection, name, spy)
    return sent


@pytest.mark.skipif(not PG_URL, reason="needs LOYALTY_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_reads_asked_for_together_reach_postgresql_as_one_statement_each_with_its_own_row(
    sessions: SessionFactory, program: Program, monkeypatch: pytest.MonkeyPatch
) -> None:
    codes = {tid: member.code for tid, member in (await _join(sessions, program, 5)).items()}
    sent = _count_statements(monkeypatch)

    async def read(telegram_id: int, extra: int) -> Any:
        async with sessions() as session:
            return await _CODE_AND_POINTS_PLUS.first(session, {"telegram_id": telegram_id, "extra": extra})

    asked = [(5, 1), (1, 20), (404, 0), (3, 300), (1, 4000), (2, 5)]  # a stranger, a member asked for twice
    rows = await asyncio.gather(*(read(telegram_id, extra) for telegram_id, extra in asked))
    assert rows == [None if telegram_id == 404 else (codes[telegram_id], 50 + extra) for telegram_id, extra in asked]
    assert len(sent) == 1

    sent.clear()
    assert await read(2, 7) == (codes[2], 57)  # alone: the statement as it is
    assert len(sent) == 1 and "unnest" not in sent[0]


@pytest.mark.skipif(not PG_URL, reason="needs LOYALTY_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_read_cancelled_while_it_waits_for_its_batch_leaves_the_others_answered(
    sessions: SessionFactory, program: Program
) -> None:
    codes = {tid: member.code for tid, member in (await _join(sessions, program, 3)).items()}

    async def read(telegram_id: int) -> Any:
        async with sessions() as session:
            return await _CODE_AND_POINTS_PLUS.first(session, {"telegram_id": telegram_id, "extra": 0})

    reads = [asyncio.create_task(read(telegram_id)) for telegram_id in (1, 2, 3)]
    await asyncio.sleep(0)  # each has asked, and waits for the round trip
    reads[1].cancel()
    async with asyncio.timeout(5):  # the others are not left waiting
        assert await reads[0] == (codes[1], 50) and await reads[2] == (codes[3], 50)
    with pytest.raises(asyncio.CancelledError):
        await reads[1]
    assert await read(2) == (codes[2], 50)


async def test_release_idle_never_commits_a_write_made_outside_a_unit_of_work(
    sessions: SessionFactory, engine: AsyncEngine
) -> None:
    async with sessions() as session:
        session.add(Member(telegram_id=6, chat_id=6, code="BBBB3333"))
        if engine.dialect.name == "postgresql":  # refused before it is made
            with pytest.raises(WriteOutsideTransaction):
                await session.flush()
        else:  # SQLite's driver began a transaction for it
            await session.flush()
            await release_idle(session)
            assert session.in_transaction()
        await session.rollback()
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Member))).scalar_one() == 0


@pytest.mark.skipif(not PG_URL, reason="needs LOYALTY_TEST_DATABASE_URL (PostgreSQL)")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_statement_slower_than_the_statement_timeout_fails_fast(database_url: str) -> None:
    import time

    from storage.database import is_unavailable

    engine = make_engine(database_url, statement_timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            async with make_session_factory(engine)() as session:
                await session.execute(text("SELECT pg_sleep(5)"))
        assert time.monotonic() - started < 3 and is_unavailable(raised.value)
        async with make_session_factory(engine)() as session:  # the pool recovers
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_migration_0015_goes_down_and_up_and_finds_the_campaign_of_older_purchases(
    database_url: str, sessions: SessionFactory, engine: AsyncEngine, program: Program
) -> None:
    from alembic import command

    from loyalty.campaigns import Effect, start_campaign
    from storage.migrate import alembic_config
    from storage.models import Campaign

    member_id = await _member(sessions, program)
    async with sessions() as session:
        started = await start_campaign(
            session, name="Rainy week", effect=Effect(Decimal(5), None), days=3, category=None, actor_id=1, now=NOW
        )
        result = await record_purchase(
            session, program, member_id=member_id, amount=Decimal("10"), source="receipt", external_id="R-1", now=NOW
        )
    assert result.campaign is not None and result.purchase.campaign_id == started.id
    await engine.dispose()  # Alembic works over its own connection
    config = alembic_config(database_url)

    def columns(table: str) -> set[str]:
        async def read() -> set[str]:
            own = make_engine(database_url)  # in this thread's event loop
            async with own.connect() as connection:
                found = await connection.run_sync(lambda sync: sa_inspect(sync).get_columns(table))
            await own.dispose()
            return {column["name"] for column in found}

        return asyncio.run(read())

    def down_and_up() -> tuple[set[str], set[str]]:
        command.downgrade(config, "0014")
        down = columns("campaign") | columns("purchase")
        command.upgrade(config, "head")
        return down, columns("campaign") | columns("purchase")

    down, up = await asyncio.to_thread(down_and_up)
    assert not {"name_zh_hans", "name_zh_hant", "campaign_id"} & down
    assert {"name_zh_hans", "name_zh_hant", "campaign_id"} <= up
    async with sessions() as session:
        purchase = (await session.execute(select(Purchase))).scalar_one()
        campaign = await session.get(Campaign, started.id)
    # The purchase from before 0015 finds its campaign by the name it recorded and when it happened.
    assert (purchase.promotion, purchase.campaign_id, purchase.points) == ("Rainy week", started.id, 50)
    assert campaign is not None and campaign.name == "Rainy week" and campaign.name_zh_hans is None
