"""/stats and /export in chat, and `loyalty report` in the terminal, end to end."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from pathlib import Path

import pytest

from loyalty import metrics
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


async def _shop(harness: BotHarness) -> None:
    """Three members, four purchases (one member twice), one of them a sneaky name."""
    for tid, name in ((3001, "Ann"), (3002, "Bo"), (3003, '=HYPERLINK("http://x")')):
        await harness.send(harness.user(tid, name), "/start")
    for n, (tid, amount) in enumerate(((3001, "30"), (3001, "45.50"), (3002, "12"), (3003, "20"))):
        await harness.purchase(str(tid), amount, f"S-{n}")
    harness.clock.advance(minutes=5)  # figures are asked for a little later


def _card_id(harness: BotHarness) -> int:
    """The /stats card (the charts come after it)."""
    return next(m["message_id"] for m in reversed(harness.tg.messages(ADMIN_ID)) if m.get("reply_markup"))


async def test_stats_card_and_charts(harness: BotHarness) -> None:
    await _shop(harness)
    admin = harness.user(ADMIN_ID, "Boss")
    calls = await harness.send(admin, "/stats 7d")
    [card] = [c.params["text"] for c in calls if c.method == "sendMessage"]
    assert "👥 Members: 3 (+3 new) · active 3 (100%)" in card
    assert "repeat purchase 33%" in card  # one of three customers bought twice
    assert "🛍 Customers in the last 12 months: 3" in card and "repeat within the period 33%" in card
    assert "🪙 Points: from purchases " in card and "bonuses 150" in card and "outstanding " in card
    [album] = [c for c in calls if c.method == "sendMediaGroup"]
    media = album.params["media"]
    assert len(media) == 4 and all(item["type"] == "photo" for item in media)
    assert len(album.files) == 4 and all(data.startswith(PNG) for data in album.files.values())
    [legend] = harness.texts(await harness.press(admin, "ℹ️ What these mean", message_id=_card_id(harness)), ADMIN_ID)
    assert "each member counts once, with their latest answer" in legend
    assert "over a short period retention reads high next to churn" in legend
    harness.tg.assert_clean()


async def test_stats_in_chinese(harness: BotHarness) -> None:
    await _shop(harness)
    admin = harness.user(ADMIN_ID, "Boss", language_code="zh-hans")
    calls = await harness.send(admin, "/stats")
    [card] = [c.params["text"] for c in calls if c.method == "sendMessage"]
    assert "👥 会员：3（新增 3）" in card and "留存率" in card
    [legend] = harness.texts(await harness.press(admin, "ℹ️ 这些数字的含义", message_id=_card_id(harness)), ADMIN_ID)
    assert "净推荐值" in legend and "每位会员只计一次" in legend
    harness.tg.assert_clean()


async def test_bad_periods_are_explained(harness: BotHarness) -> None:
    admin = harness.user(ADMIN_ID, "Boss")
    for words in ("/stats week", "/stats 0d", "/stats 999m", "/stats 30d extra"):
        calls = await harness.send(admin, words)
        assert [c.method for c in calls] == ["sendMessage"], words
        assert "Please choose a period: 7d, 30d, 90d or 12m" in calls[0].params["text"]


async def test_only_admins_see_figures_or_export(harness: BotHarness) -> None:
    await _shop(harness)
    for tid in (CASHIER_ID, 3001):
        for command in ("/stats", "/export"):
            calls = await harness.send(harness.user(tid, "Nosy"), command)
            assert [c.method for c in calls] == ["sendMessage"]
            assert calls[0].params["text"] == "Sorry, that command is only for the shop's staff."


async def test_export_sends_three_csv_files(harness: BotHarness) -> None:
    await _shop(harness)
    calls = await harness.send(harness.user(ADMIN_ID, "Boss"), "/export")
    documents = [c for c in calls if c.method == "sendDocument"]
    assert [c.params["caption"] for c in documents] == [
        "members.csv: 3 rows",
        "purchases.csv: 4 rows",
        "ledger.csv: 7 rows",
    ]  # 3 welcome bonuses, 4 purchases
    files = {name: data for c in documents for name, data in c.files.items()}
    [members_csv, purchases_csv, _ledger_csv] = files.values()
    members = list(csv.DictReader(io.StringIO(members_csv.decode("utf-8-sig"))))
    assert [m["first_name"] for m in members] == ["Ann", "Bo", '\'=HYPERLINK("http://x")']  # no formula runs
    purchases = list(csv.DictReader(io.StringIO(purchases_csv.decode("utf-8-sig"))))
    assert [p["amount"] for p in purchases] == ["30.00", "45.50", "12.00", "20.00"]
    harness.tg.assert_clean()


async def test_report_in_the_terminal(harness: BotHarness, database_url: str) -> None:
    await _shop(harness)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(LOYALTY_DATABASE_URL=database_url, PYTHONPATH=str(ROOT), COLUMNS="120")

    async def report(*args: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "report",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, out.decode(), err.decode()

    # The report reads the real clock; the shop's purchases were made at the harness's (fixed) time.
    code, out, err = await report("--period", "120m", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    figures = {(f["section"], f["figure"]): f["value"] for f in document["figures"]}
    assert figures[("members", "total")] == 3
    # Numbers as numbers: a share as a fraction, nothing as null; the period in the program's timezone.
    assert figures[("customers", "repeat purchase rate (12 months)")] == pytest.approx(1 / 3)
    assert figures[("support", "csat")] is None and figures[("nps", "score")] is None
    assert isinstance(figures[("points", "outstanding value (CNY)")], float)
    assert document["period"]["timezone"] == "Asia/Shanghai" and document["period"]["end"].endswith("+08:00")
    code, out, _ = await report("--format", "csv", "--period", "120m")
    assert code == 0 and "members,total,3" in out
    code, out, _ = await report("--period", "120m")
    assert code == 0 and "repeat purchase rate" in out and "33.3%" in out
    assert code == 0 and "(Asia/Shanghai)" in out
    code, _, err = await report("--period", "soon")
    assert code == 2 and "--period 'soon'" in err and "Traceback" not in err
    code, _, err = await report("--format", "xml")
    assert code == 2 and "--format must be one of" in err


async def test_report_without_a_database_says_so_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(LOYALTY_DATABASE_URL=f"sqlite+aiosqlite:///{missing}", PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "report",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2 and f"no database at {missing}" in err.decode()
    assert not missing.exists(), "no empty database was made"


async def test_stats_uses_the_schedulers_fresh_snapshot(harness: BotHarness) -> None:
    await _shop(harness)
    program, sessions = harness.services.program, harness.sessions
    await metrics.refresh_snapshots(sessions, program, harness.clock())  # the scheduler's job
    async with sessions() as session:
        assert await metrics.fresh_snapshot(session, "7d", harness.clock()) is not None
    # A member joins after the snapshot: a standard period shows the snapshot, "as of" its time.
    await harness.send(harness.user(3004, "Late"), "/start")
    harness.clock.advance(minutes=10)
    admin = harness.user(ADMIN_ID, "Boss")
    [card] = [c.params["text"] for c in await harness.send(admin, "/stats 7d") if c.method == "sendMessage"]
    assert "👥 Members: 3 (+3 new)" in card and "Figures as of" in card
    # Another length is computed now; so is a standard one once its snapshot is stale.
    [card] = [c.params["text"] for c in await harness.send(admin, "/stats 8d") if c.method == "sendMessage"]
    assert "👥 Members: 4 (+4 new)" in card and "Figures as of" not in card
    harness.clock.advance(minutes=10)
    [card] = [c.params["text"] for c in await harness.send(admin, "/stats 7d") if c.method == "sendMessage"]
    assert "👥 Members: 4 (+4 new)" in card and "Figures as of" not in card


async def test_a_snapshot_reads_back_as_it_was_computed(harness: BotHarness) -> None:
    await _shop(harness)
    program, sessions, now = harness.services.program, harness.sessions, harness.clock()
    period = metrics.parse_period("30d", now, program.tz)
    assert period is not None
    board = await metrics.dashboard(sessions, program, period, 14)
    async with sessions() as session:
        await metrics.save_snapshot(session, board, now)
        assert await metrics.fresh_snapshot(session, "30d", now) == board
        assert await metrics.fresh_snapshot(session, "30d", now + metrics.SNAPSHOT_MAX_AGE * 2) is None


async def test_migrate_says_what_it_applied_or_that_there_was_nothing_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(LOYALTY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}", PYTHONPATH=str(ROOT))

    async def migrate() -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "migrate", env=env, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 120)
        assert process.returncode == 0
        return out.decode().strip()

    first = await migrate()
    assert first.startswith("migrated the database: empty → 00"), first
    assert (await migrate()).startswith("the database is up to date (migration 00"), "and nothing to do"
