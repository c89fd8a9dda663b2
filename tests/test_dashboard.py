"""The console's dashboard over HTTP: the figures are `loyalty report --format json`'s for the same period and data,
served from the scheduler's snapshot while it is fresh; bad periods are explained in the viewer's language; only
admins see it; the CSV downloads are the chat's /export files, with a download's headers, also through a signed
link for Telegram's downloadFile."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from loyalty import metrics
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness
from tests.test_miniapp import MEMBER_ID, auth, join, services_with_app
from tests.test_stats import _shop
from web.server import make_http_app

ROOT = Path(__file__).resolve().parent.parent
ADMIN = {"first_name": "Ada"}
FIGURES_CSV = "/app/api/console/export/figures.csv"
REPORT_KEYS = ("program", "period", "figures", "trend", "cohorts", "tiers")
# `loyalty report` as the terminal runs it, at the time the test says (the CLI reads storage.clock.utcnow).
AT_A_TIME = (
    "import datetime, os, storage.clock as clock; "
    "clock.utcnow = lambda: datetime.datetime.fromisoformat(os.environ['REPORT_NOW']); "
    "from bot.cli import app; app()"
)


@pytest.fixture
async def app(harness: BotHarness) -> AsyncIterator[TestClient]:
    server = TestServer(make_http_app(services_with_app(harness), serve_updates=True))
    async with TestClient(server) as client:
        yield client


async def report(database_url: str, now: datetime, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(LOYALTY_DATABASE_URL=database_url, PYTHONPATH=str(ROOT), REPORT_NOW=now.isoformat())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        AT_A_TIME,
        "report",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def dashboard(app: TestClient, harness: BotHarness, period: str, **user: Any) -> dict[str, Any]:
    response = await app.get(
        "/app/api/console/dashboard", params={"period": period}, headers=auth(harness, ADMIN_ID, **(ADMIN | user))
    )
    assert response.status == 200, await response.text()
    return dict(await response.json())


def figures(board: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(f["section"], f["figure"]): f["value"] for f in board["figures"]}


async def test_the_dashboards_figures_are_the_reports(app: TestClient, harness: BotHarness, database_url: str) -> None:
    await _shop(harness)
    ann = await harness.member(3001)
    assert ann is not None
    await harness.send(harness.user(ADMIN_ID, "Ada"), f"/adjust {ann.code} -20 Spilled coffee")
    harness.clock.advance(minutes=1)
    snapshot_time = harness.clock()
    await metrics.refresh_snapshots(harness.sessions, harness.services.program, snapshot_time)  # the scheduler's job
    harness.clock.advance(minutes=5)
    # A standard period: the scheduler's snapshot, figures as of its time, as the report computed then.
    board = await dashboard(app, harness, "30d")
    expected = json.loads(await report(database_url, snapshot_time, "--period", "30d", "--format", "json"))
    assert {key: board[key] for key in REPORT_KEYS} == expected
    assert figures(board)[("members", "total")] == 3 and figures(board)[("points", "adjustments")] == -20
    assert board["as_of"] is not None and "Figures as of" in board["as_of"]
    # Another length: computed now, as the report computes it now.
    board = await dashboard(app, harness, "120m")
    expected = json.loads(await report(database_url, harness.clock(), "--period", "120m", "--format", "json"))
    assert {key: board[key] for key in REPORT_KEYS} == expected
    assert board["as_of"] is None
    # What the page shows is the same data: a card, a chart's tooltip.
    cards = {card["key"]: card for card in board["cards"]}
    assert cards["members"]["value"] == "3" and cards["members"]["note"] == "+3 new"
    charts = {chart["key"]: chart for chart in board["charts"]}
    assert set(charts) == {"members", "nps", "points", "tiers", "cohorts"}
    tips = [mark["tip"] for mark in charts["points"]["marks"]]
    outstanding = figures(board)[("points", "outstanding")]
    assert tips[-1].startswith(f"Outstanding · {outstanding:,} (CN¥")


async def test_the_dashboard_reads_the_snapshot_until_it_is_stale(app: TestClient, harness: BotHarness) -> None:
    await _shop(harness)
    program, sessions = harness.services.program, harness.sessions
    await metrics.refresh_snapshots(sessions, program, harness.clock())
    await harness.send(harness.user(3004, "Late"), "/start")  # after the snapshot
    harness.clock.advance(minutes=10)
    board = await dashboard(app, harness, "7d")
    assert figures(board)[("members", "total")] == 3 and board["as_of"] is not None
    view = await app.get("/app/view/console/dashboard?period=7d", headers=auth(harness, ADMIN_ID, **ADMIN))
    assert "Figures as of" in await view.text()
    # A length the scheduler keeps no snapshot of is computed now, as /stats does.
    assert figures(await dashboard(app, harness, "8d"))[("members", "total")] == 4
    # The snapshot is past SNAPSHOT_MAX_AGE (the scheduler stopped): computed once, and kept for the next reader.
    harness.clock.advance(minutes=10)
    board = await dashboard(app, harness, "7d")
    assert figures(board)[("members", "total")] == 4 and board["as_of"] is None
    async with sessions() as session:
        kept = await metrics.fresh_snapshot(session, "7d", harness.clock())
    assert kept is not None and kept.members.total == 4 and kept.period.end == harness.clock()


async def test_figures_that_cannot_be_computed_fall_back_to_the_last_snapshot(
    app: TestClient, harness: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _shop(harness)
    await metrics.refresh_snapshots(harness.sessions, harness.services.program, harness.clock())
    harness.clock.advance(hours=2)  # the scheduler stopped: the snapshot is stale

    async def too_slow(*args: object, **kwargs: object) -> metrics.Dashboard:
        raise TimeoutError  # what a statement longer than LOYALTY_DATABASE_STATEMENT_TIMEOUT raises

    monkeypatch.setattr(metrics, "dashboard", too_slow)
    board = await dashboard(app, harness, "7d")
    assert figures(board)[("members", "total")] == 3 and board["as_of"] is not None  # the old figures, dated
    answer = await app.get("/app/api/console/dashboard?period=8d", headers=auth(harness, ADMIN_ID, **ADMIN))
    assert answer.status == 504  # no snapshot of another length to fall back to: the time-out, said as such


async def test_a_bad_period_is_explained_in_the_viewers_language(app: TestClient, harness: BotHarness) -> None:
    for period, language, words in [
        ("week", "en", "Please choose a period: 7d, 30d, 90d or 12m"),
        ("0d", "en", "Please choose a period"),
        ("999m", "zh-hans", "请选择时间段"),
        ("30d extra", "zh-hant", "請選擇"),
    ]:
        headers = auth(harness, ADMIN_ID, first_name="Ada", language_code=language)
        for path in ("/app/api/console/dashboard", "/app/view/console/dashboard", FIGURES_CSV):
            response = await app.get(path, params={"period": period}, headers=headers)
            assert response.status == 400, (path, period)
            error = (await response.json())["error"]
            assert error["code"] == "invalid_period" and words in error["message"], (path, period, error)


@pytest.mark.parametrize("who", [MEMBER_ID, CASHIER_ID])
async def test_members_and_cashiers_get_403_and_no_figures(app: TestClient, harness: BotHarness, who: int) -> None:
    member = await join(harness)
    if who != MEMBER_ID:
        await join(harness, who, "Staffer")
    headers = auth(harness, who)
    paths = [
        "/app/api/console/dashboard",
        "/app/view/console/dashboard?period=7d",
        *(f"/app/api/console/export/{kind}.csv" for kind in ("members", "purchases", "ledger", "figures")),
        "/app/api/console/export/members/link",
    ]
    for path in paths:
        response = await app.get(path, headers=headers)
        assert response.status == 403, (path, await response.text())
        text = await response.text()
        assert member.code not in text and "figures" not in text.replace("/app/api/console/export/figures", "")
    for path in paths:
        assert (await app.get(path)).status == 401, path  # no initData at all
    start = await app.get("/app/view/start", headers=headers)
    assert start.status == 200 and "data-dashboard" not in await start.text()


async def test_the_downloads_are_the_chats_export_files(
    app: TestClient, harness: BotHarness, database_url: str
) -> None:
    await _shop(harness)
    calls = await harness.send(harness.user(ADMIN_ID, "Boss"), "/export")
    sent = {
        call.params["caption"].split(":")[0]: data
        for call in calls
        if call.method == "sendDocument"
        for data in call.files.values()
    }
    assert set(sent) == {"members.csv", "purchases.csv", "ledger.csv"}
    headers = auth(harness, ADMIN_ID, **ADMIN)
    for name, data in sent.items():
        response = await app.get(f"/app/api/console/export/{name}", params={"period": "30d"}, headers=headers)
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.headers["Content-Disposition"] == f'attachment; filename="{name}"'
        assert response.headers["Cache-Control"] == "no-store"
        assert await response.read() == data, name
    # The period's figures: the report's CSV, with the byte-order mark that makes Excel read it as UTF-8.
    response = await app.get("/app/api/console/export/figures.csv", params={"period": "120m"}, headers=headers)
    assert response.headers["Content-Disposition"] == 'attachment; filename="figures-120m.csv"'
    body = (await response.read()).decode("utf-8")
    assert body.startswith("\ufeff")
    expected = await report(database_url, harness.clock(), "--period", "120m", "--format", "csv")
    assert list(csv.reader(io.StringIO(body[1:]))) == list(csv.reader(io.StringIO(expected)))
    assert ["members", "total", "3"] in list(csv.reader(io.StringIO(expected)))
    # Unknown files are not found.
    assert (await app.get("/app/api/console/export/secrets.csv", headers=headers)).status == 404


async def test_a_signed_link_downloads_without_a_header_for_five_minutes(app: TestClient, harness: BotHarness) -> None:
    await _shop(harness)
    headers = auth(harness, ADMIN_ID, **ADMIN)
    response = await app.get("/app/api/console/export/members/link", params={"period": "7d"}, headers=headers)
    assert response.status == 200, await response.text()
    link = await response.json()
    assert link["file_name"] == "members.csv" and link["url"].startswith("api/console/export/members.csv?period=7d&t=")
    with_header = await (await app.get("/app/api/console/export/members.csv", headers=headers)).read()
    signed = await app.get("/app/" + link["url"])  # as Telegram's client fetches it: no Authorization header
    assert signed.status == 200 and await signed.read() == with_header
    assert signed.headers["Content-Disposition"] == 'attachment; filename="members.csv"'
    # Only for that file: another file, a changed signature, or later than five minutes: 401.
    assert (await app.get("/app/" + link["url"].replace("members.csv", "ledger.csv"))).status == 401
    assert (await app.get("/app/" + link["url"][:-3] + "AAA")).status == 401
    harness.clock.advance(minutes=6)
    assert (await app.get("/app/" + link["url"])).status == 401
    # The role is checked when the file is served: a cashier's link (if one were signed) is refused.
    from web.miniapp.dashboard import link_token

    token = link_token(harness.tg.token, CASHIER_ID, "members", "7d", harness.clock().timestamp())
    response = await app.get(f"/app/api/console/export/members.csv?period=7d&t={token}")
    assert response.status == 403


async def test_the_page_draws_its_charts_in_the_viewers_language(app: TestClient, harness: BotHarness) -> None:
    await _shop(harness)
    await join(harness, ADMIN_ID, "Ada", "zh-hans")
    headers = auth(harness, ADMIN_ID, **ADMIN)
    start = await app.get("/app/view/start", headers=headers)  # an admin opens on the dashboard
    page = await start.text()
    assert start.status == 200 and "data-dashboard" in page
    assert page.count("<svg") == 5 and page.count('class="mark') > 20
    assert "按加入月份的会员复购情况" in page and "新会员" in page and "下载" in page
    assert 'data-tip="' in page
    # The period's words: the chooser marks the one shown; a length outside it is shown chosen too.
    view = await app.get("/app/view/console/dashboard?period=14d", headers=headers)
    assert 'data-period="14d" aria-checked="true"' in await view.text()


async def test_the_dashboard_copes_with_an_empty_program(app: TestClient, harness: BotHarness) -> None:
    board = await dashboard(app, harness, "12m")
    assert figures(board)[("members", "total")] == 0
    assert all(chart["empty"] for chart in board["charts"] if chart["key"] != "points")
    view = await app.get("/app/view/console/dashboard?period=7d", headers=auth(harness, ADMIN_ID, **ADMIN))
    assert view.status == 200 and "No data yet" in await view.text()


async def test_the_dashboard_is_in_the_openapi_document(app: TestClient) -> None:
    paths = (await (await app.get("/api/v1/openapi.json")).json())["paths"]
    assert "get" in paths["/app/api/console/dashboard"]


def test_the_chooser_offers_the_periods_the_scheduler_keeps() -> None:
    # The chooser's periods are the ones the scheduler keeps fresh: opening the dashboard does not compute them.
    from web.miniapp.dashboard import CHOICES

    assert set(CHOICES) <= set(metrics.SNAPSHOT_PERIODS)
    assert timedelta(minutes=10) < metrics.SNAPSHOT_MAX_AGE  # the scheduler's interval, with room to spare
