"""The program as data (``loyalty.revisions``, ``bot.programs``, ``loyalty program``): the file becomes revision 1,
imports and rollbacks are new revisions, an edit based on an old revision is refused, a purchase records its
revision, and a second worker follows a new revision within seconds, through Redis or by polling."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import Connection, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from bot.cli import app
from bot.programs import CHANNEL, POLL_SECONDS, ProgramWatcher, announce
from bot.services import Services, compose
from loyalty.program import EarnRules, ProgramError, load_program, parse_program, program_data
from loyalty.revisions import (
    FROM_CLI,
    FROM_TELEGRAM,
    ProgramRef,
    StaleRevision,
    current_number,
    current_revision,
    ensure_first_revision,
    get_revision,
    history,
    program_toml,
    rollback_to,
    same_program,
    save_revision,
)
from storage.database import SessionFactory, begin_write, make_engine
from storage.models import Member, ProgramRevision, Purchase, Reward
from tests.harness import CASHIER_ID, BotHarness

REDIS_URL = os.environ.get("LOYALTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")
FILE = load_program()


def _doubled() -> dict[str, object]:
    """The example program earning 2 points per unit, as data."""
    data = program_data(FILE)
    data["earn"] = {**data["earn"], "points_per_unit": "2"}
    return data


# --- the rules, against SQLite and PostgreSQL ---


async def test_the_file_becomes_revision_1_and_exports_as_itself(sessions: SessionFactory, clock) -> None:
    async with sessions() as session:
        first = await ensure_first_revision(session, FILE, clock())
        again = await ensure_first_revision(session, parse_program("name = 'Other'"), clock())
    assert first.number == again.number == 1 and first.author == "file" and first.program.revision == 1
    exported = parse_program(program_toml(first.program), "export")
    assert same_program(exported, FILE) and program_data(exported) == program_data(FILE)


async def test_a_revision_based_on_an_old_one_is_refused_naming_what_changed(sessions: SessionFactory, clock) -> None:
    async with sessions() as session:
        await ensure_first_revision(session, FILE, clock())
        mine = await save_revision(session, _doubled(), based_on=1, author=FROM_TELEGRAM, author_id=77, now=clock())
        with pytest.raises(StaleRevision) as refused:
            await save_revision(session, {**program_data(FILE), "name": "Beans"}, based_on=1, author="cli", now=clock())
        assert refused.value.based_on == 1 and refused.value.current == 2 and refused.value.changed == ["earn"]
        assert "revision 2 is in force" in str(refused.value) and "changed: earn" in str(refused.value)
        assert await current_number(session) == 2
        with pytest.raises(StaleRevision):  # a first revision when there is one already
            await save_revision(session, FILE, based_on=None, author=FROM_CLI, now=clock())
        assert mine.number == 2 and mine.author_id == 77 and mine.program.earn.points_per_unit == 2


async def test_invalid_data_names_the_key_and_stores_nothing(sessions: SessionFactory, clock) -> None:
    async with sessions() as session:
        await ensure_first_revision(session, FILE, clock())
        for bad, message in (
            ({**program_data(FILE), "earn": {"pointz": 1}}, "earn.pointz: unknown key"),
            ({**program_data(FILE), "timezone": "Mars/Base"}, "unknown time zone"),
        ):
            with pytest.raises(ProgramError, match=message):
                await save_revision(session, bad, based_on=1, author=FROM_CLI, now=clock())
        assert await current_number(session) == 1


async def test_rollback_is_a_new_revision_with_the_old_content(sessions: SessionFactory, clock) -> None:
    async with sessions() as session:
        await ensure_first_revision(session, FILE, clock())
        await save_revision(session, _doubled(), based_on=1, author=FROM_CLI, now=clock())
        back = await rollback_to(session, 1, based_on=2, author=FROM_CLI, now=clock(), note="too generous")
        assert back.number == 3 and back.restores == 1 and back.note == "too generous"
        assert same_program(back.program, FILE)
        assert [row.number for row in await history(session)] == [3, 2, 1]
        with pytest.raises(LookupError):
            await rollback_to(session, 9, based_on=3, author=FROM_CLI, now=clock())


async def test_the_reward_catalog_follows_a_new_revision(sessions: SessionFactory, clock) -> None:
    async with sessions() as session:
        await ensure_first_revision(session, FILE, clock())
        fewer = {**program_data(FILE), "rewards": [r for r in program_data(FILE)["rewards"] if r["key"] == "latte"]}
        fewer["punch_cards"] = [c for c in fewer.get("punch_cards", []) if c["reward"] == "latte"]
        fewer["rewards"][0]["cost"] = 250
        await save_revision(session, fewer, based_on=1, author=FROM_CLI, now=clock())
        rewards = {r.key: r for r in (await session.execute(select(Reward))).scalars()}
    assert rewards["latte"].cost == 250 and rewards["latte"].active
    assert all(not r.active for key, r in rewards.items() if key != "latte")


# --- a purchase is evaluated under one revision, and a second worker follows a new one ---


async def _worker(harness: BotHarness, redis: Redis | None = None) -> Services:
    """Another process: its own program holder, read from the database as at its start."""
    async with harness.sessions() as session:
        revision = await current_revision(session)
    assert revision is not None
    return compose(
        harness.services.settings, ProgramRef(revision.program), harness.sessions, harness.bot, clock=harness.clock,
        redis=redis,
    )  # fmt: skip


async def _purchase(harness: BotHarness, services: Services, receipt: str) -> Purchase:
    harness.dp = services.dispatcher
    async with harness.sessions() as session:
        code = (await session.execute(select(Member.code).where(Member.telegram_id == 1001))).scalar_one()
    await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {code} 10 {receipt}")
    async with harness.sessions() as session:
        return (await session.execute(select(Purchase).where(Purchase.external_id == receipt))).scalar_one()


async def _sees(services: Services, number: int, within: float = 5.0) -> float:
    started = time.monotonic()
    while services.programs.revision != number:
        assert time.monotonic() - started < within, f"revision {number} not in force after {within} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def _reload_and_earn(harness: BotHarness, redis: Redis | None) -> None:
    async with harness.sessions() as session:
        await ensure_first_revision(session, FILE, harness.clock())
    one, two = await _worker(harness), await _worker(harness, redis)
    await harness.send(harness.user(1001, "Ann"), "/start")
    before = await _purchase(harness, two, "R-1")
    assert before.program_revision == 1 and before.points == 10
    two.watch_program()
    if redis is not None:  # listening before the news, so that it is the message that carries it
        for _ in range(250):
            if (await redis.pubsub_numsub(CHANNEL))[0][1] >= 1:
                break
            await asyncio.sleep(0.02)
    async with harness.sessions() as session:  # an admin edits the program through the first worker
        saved = await save_revision(session, _doubled(), based_on=1, author=FROM_TELEGRAM, now=harness.clock())
    if redis is not None:
        await announce(redis, saved.number)
    took = await _sees(two, 2)
    if redis is not None:
        assert took < 1  # the message, not the 30 s look
    after = await _purchase(harness, two, "R-2")
    assert after.program_revision == 2 and after.points == 20
    assert one.programs.revision == 1  # a worker that does not watch keeps its own
    assert two.watcher is not None
    await two.watcher.stop()


async def test_a_second_worker_polls_a_new_revision_and_earns_by_it(harness: BotHarness) -> None:
    assert POLL_SECONDS <= 2
    await _reload_and_earn(harness, None)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    await client.ping()  # Redis is part of the stack: no Redis is a failure, not a skip
    yield client
    await client.aclose()


async def test_a_second_worker_hears_of_a_new_revision_through_redis(harness: BotHarness, redis: Redis) -> None:
    await _reload_and_earn(harness, redis)


async def test_a_revision_this_version_cannot_read_leaves_the_program_in_force(
    sessions: SessionFactory, clock, caplog: pytest.LogCaptureFixture
) -> None:
    async with sessions() as session:
        first = await ensure_first_revision(session, FILE, clock())
        # As if a newer version had saved a key this one does not know.
        data = _doubled()
        data["earn"] = {**data["earn"], "from_the_future": 1}  # type: ignore[dict-item]
        await begin_write(session)
        session.add(ProgramRevision(number=2, program=json.dumps(data), author=FROM_CLI, created_at=clock()))
        await session.commit()
    programs = ProgramRef(first.program)
    watcher = ProgramWatcher(sessions, programs)
    with caplog.at_level("ERROR", logger="bot.programs"):
        assert await watcher.refresh() is False and await watcher.refresh() is False
    assert programs.revision == 1 and programs.current.earn.points_per_unit == 1
    [logged] = [r.getMessage() for r in caplog.records if r.name == "bot.programs"]  # once, not every 2 s
    assert "program revision 2 cannot be used by this version" in logged and "earn.from_the_future" in logged


def test_a_program_knows_its_revision_only_from_the_database() -> None:
    assert FILE.revision is None
    assert EarnRules().points_per_unit == 1


# --- the command line ---


@pytest.fixture
def cli_env(tmp_path: Path, sqlite_template: Path) -> dict[str, str]:
    path = tmp_path / "loyalty.db"
    shutil.copy(sqlite_template, path)
    return {"LOYALTY_DATABASE_URL": f"sqlite+aiosqlite:///{path}", "LOYALTY_REDIS_URL": ""}


def _run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["program", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_export_import_rollback_round_trip(cli_env: dict[str, str], tmp_path: Path) -> None:
    code, out, _ = _run(cli_env, "export")
    assert code == 0 and out.startswith("# Program revision 1 ")
    assert same_program(parse_program(out), FILE)
    exported = tmp_path / "program.toml"
    assert _run(cli_env, "export", str(exported))[0] == 0
    assert same_program(load_program(exported), FILE)

    assert _run(cli_env, "import", str(exported)) == (0, f"nothing to import: {exported} says the same as the "
                                                          "revision in force\n", "")  # fmt: skip
    exported.write_text(exported.read_text().replace('points_per_unit = "1"', 'points_per_unit = "2"'))
    code, out, _ = _run(cli_env, "import", str(exported), "--note", "double points week")
    assert (code, out) == (0, f"imported {exported} as program revision 2\n")
    assert 'points_per_unit = "2"' in _run(cli_env, "export")[1]

    assert _run(cli_env, "rollback", "1", "--note", "back to normal")[:2] == (
        0,
        "program revision 3 brings back revision 1\n",
    )
    assert same_program(parse_program(_run(cli_env, "export")[1]), FILE)
    code, out, _ = _run(cli_env, "history")
    assert code == 0 and "double points week" in out and "back to normal" in out and "file" in out
    code, _, err = _run(cli_env, "rollback", "7")
    assert code == 2 and "there is no program revision 7: the latest is 3" in err


def test_cli_an_invalid_import_names_the_key_and_stores_nothing(cli_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "Beans"\n[earn]\npointz_per_unit = "2"\n')
    code, out, err = _run(cli_env, "import", str(bad))
    assert code == 2 and out == "" and f"{bad}: earn.pointz_per_unit: unknown key" in err
    assert _run(cli_env, "history")[1].count("file") == 1
    assert _run(cli_env, "export")[1].startswith("# Program revision 1 ")


async def test_a_first_revision_from_two_workers_at_once_is_stored_once(sessions: SessionFactory, clock) -> None:
    async def start() -> int:
        async with sessions() as session:
            return (await ensure_first_revision(session, FILE, clock())).number

    assert await asyncio.gather(start(), start()) == [1, 1]
    async with sessions() as session:
        revision = await get_revision(session, 1)
    assert revision is not None and revision.program.revision == 1


async def test_migration_0016_goes_down_and_up(database_url: str, engine: AsyncEngine) -> None:
    from alembic import command

    from storage.migrate import alembic_config

    await engine.dispose()  # Alembic works over its own connection
    config = alembic_config(database_url)

    def tables() -> dict[str, set[str]]:
        async def read() -> dict[str, set[str]]:
            own = make_engine(database_url)
            async with own.connect() as connection:

                def names(sync: Connection) -> dict[str, set[str]]:
                    found = sa_inspect(sync)
                    return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()}

                found = await connection.run_sync(names)
            await own.dispose()
            return found

        return asyncio.run(read())

    def down_and_up() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
        command.downgrade(config, "0015")
        down = tables()
        command.upgrade(config, "head")
        return down, tables()

    down, up = await asyncio.to_thread(down_and_up)
    assert "program_revision" not in down and "program_revision" not in down["purchase"]
    assert "program_revision" in up and "program_revision" in up["purchase"]
    # Later migrations went down on the way and came back (0018: pending points).
    assert "pending_points" not in down["member"] and {"available_at", "pending_points"} <= up["purchase"]


async def test_a_start_with_a_changed_file_keeps_the_database_revision_and_says_so(
    sessions: SessionFactory, clock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.runner import program_in_force
    from bot.settings import Settings

    changed = tmp_path / "program.toml"
    changed.write_text(program_toml(FILE).replace('points_per_unit = "1"', 'points_per_unit = "3"'))
    settings = Settings(program_file=changed, _env_file=None)  # type: ignore[call-arg]
    async with sessions() as session:
        await ensure_first_revision(session, FILE, clock())
        with caplog.at_level("WARNING", logger="bot.runner"):
            in_force = await program_in_force(session, settings, load_program(changed), clock())
        assert await current_number(session) == 1
    assert in_force.revision == 1 and in_force.earn.points_per_unit == 1
    [line] = [r.getMessage() for r in caplog.records if r.name == "bot.runner"]
    assert "differs from program revision 1 in the database; revision 1 is in force" in line
    assert f"run `loyalty program import {changed}`" in line
