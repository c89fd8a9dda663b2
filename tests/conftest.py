"""Shared fixtures: a migrated database per test (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from bot.services import compose, make_bot
from bot.settings import Settings
from emulator import FakeTelegram
from loyalty.program import Program, load_program
from loyalty.rewards import sync_catalog
from storage.database import SessionFactory, make_engine, make_session_factory
from storage.migrate import upgrade
from tests.harness import ADMIN_ID, CASHIER_ID, SUPPORT_CHAT_ID, SUPPORT_ID, BotHarness, Clock

PG_URL = os.environ.get("LOYALTY_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once, copy per test: migrations are exercised without paying for them in every test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_migrated() -> str:
    assert PG_URL is not None
    url = PG_URL.replace("postgresql://", "postgresql+asyncpg://", 1) if PG_URL.startswith("postgresql://") else PG_URL
    import asyncio

    async def reset() -> None:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(reset())
    upgrade(url)
    return url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "loyalty.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    return str(request.getfixturevalue("pg_migrated"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    if engine.dialect.name == "postgresql":
        tables = ", ".join(t.name for t in SQLModel.metadata.sorted_tables)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> SessionFactory:
    return make_session_factory(engine)


@pytest.fixture
def program() -> Program:
    return load_program()


# --- end to end: the real dispatcher and aiogram Bot over HTTP against the fake Bot API ---


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server
        server.assert_clean()


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 22, 4, 0, tzinfo=UTC))


@pytest.fixture
def support_chat() -> int | None:
    """The staff chat's id; a test module overrides it (None: no support chat)."""
    return SUPPORT_CHAT_ID


@pytest.fixture
async def harness(
    tg: FakeTelegram, sessions: SessionFactory, program: Program, clock: Clock, support_chat: int | None
) -> AsyncIterator[BotHarness]:
    settings = Settings(
        bot_token=tg.token,
        telegram_api_url=tg.base_url,
        admin_ids=frozenset({ADMIN_ID}),
        cashier_ids=frozenset({CASHIER_ID}),
        support_ids=frozenset({SUPPORT_ID}),
        support_chat_id=support_chat,
        _env_file=None,
    )  # type: ignore[call-arg]
    async with sessions() as session:
        await sync_catalog(session, program)
    bot = make_bot(settings)
    services = compose(settings, program, sessions, bot, clock=clock)
    yield BotHarness(tg, services, clock)
    await bot.session.close()
