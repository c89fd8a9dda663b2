"""The Mini App's check-in and missions over HTTP: the home panel, Check in once per day (a retried request
changes nothing), a make-up, the reminder switch, the missions screen with progress bars, bad bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer

from loyalty.program import CheckinRules, MissionRule, Program, load_program
from tests.harness import BotHarness
from tests.test_miniapp import MEMBER_ID, auth, join, services_with_app
from web.server import make_http_app


@pytest.fixture
def program() -> Program:
    visits = MissionRule(key="visits", name="3 visits", goal="purchases", target=Decimal(3), period="month", points=30)
    streak = MissionRule(
        key="streak", name="2-day streak", goal="checkin_streak", target=Decimal(2), period="week", points=9
    )
    return load_program().model_copy(
        update={
            "promotions": [],
            "missions": [visits, streak],
            "checkin": CheckinRules(enabled=True, points=5, makeup_cost=20, min_member_hours=24),
        }
    )


@pytest.fixture
async def app(harness: BotHarness) -> AsyncIterator[TestClient]:
    server = TestServer(make_http_app(services_with_app(harness), serve_updates=True))
    async with TestClient(server) as client:
        yield client


async def _post(app: TestClient, harness: BotHarness, path: str, body: object) -> tuple[int, dict]:
    response = await app.post(path, json=body, headers=auth(harness, MEMBER_ID))
    return response.status, await response.json()


async def test_check_in_from_the_app_once_per_day_with_a_make_up(app: TestClient, harness: BotHarness) -> None:
    await join(harness)
    home = await (await app.get("/app/api/home", headers=auth(harness, MEMBER_ID))).json()
    assert home["checkin"]["can_check_in"] is False and home["checkin"]["opens"]  # joined just now
    status, refused = await _post(app, harness, "/app/api/checkin", {})
    assert status == 409 and "opens for you on" in refused["error"]["message"]

    harness.clock.advance(days=1, hours=1)
    page = await (await app.get("/app/view/home", headers=auth(harness, MEMBER_ID))).text()
    assert 'data-post="checkin"' in page and "Daily check-in" in page
    status, done = await _post(app, harness, "/app/api/checkin", {})
    assert status == 201 and done["points"] == 5 and done["streak"] == 1 and not done["replayed"]
    status, again = await _post(app, harness, "/app/api/checkin", {})  # a retry, a second device
    assert status == 200 and again["replayed"] and again["balance"] == done["balance"]
    page = await (await app.get("/app/view/home", headers=auth(harness, MEMBER_ID))).text()
    assert "Checked in today" in page and 'data-streak="1"' in page

    harness.clock.advance(days=2)  # a day missed
    home = await (await app.get("/app/api/home", headers=auth(harness, MEMBER_ID))).json()
    assert home["checkin"]["streak"] == 0 and home["checkin"]["makeup_label"] == "🩹 Make up yesterday for 20 points"
    status, made = await _post(app, harness, "/app/api/checkin/makeup", {})
    # Paid 20; the made-up day completes the 2-day streak mission (+9).
    assert status == 201 and made["balance"] == done["balance"] - 20 + 9 and made["streak"] == 2
    assert "Mission complete: 2-day streak (+9 points)" in made["message"]
    status, twice = await _post(app, harness, "/app/api/checkin/makeup", {})
    assert status == 200 and twice["replayed"] and twice["balance"] == made["balance"]

    status, on = await _post(app, harness, "/app/api/checkin/reminders", {"on": True})
    assert status == 200 and "remind you" in on["message"]
    home = await (await app.get("/app/api/home", headers=auth(harness, MEMBER_ID))).json()
    assert home["checkin"]["reminders"] is True
    for body in ({"on": "maybe"}, {"x": 1}, []):
        status, bad = await _post(app, harness, "/app/api/checkin/reminders", body)
        assert status == 400 and bad["error"]["message"]
    status, bad = await _post(app, harness, "/app/api/checkin", {"day": "2026-01-01"})
    assert status == 400


async def test_the_missions_screen_shows_progress_bars_and_pays_what_is_reached(
    app: TestClient, harness: BotHarness
) -> None:
    member = await join(harness)
    await harness.purchase(member.code, "10", "R-1")
    await harness.purchase(member.code, "10", "R-2")
    screen = await (await app.get("/app/api/missions", headers=auth(harness, MEMBER_ID))).json()
    visits = next(m for m in screen["missions"] if m["key"] == "visits")
    assert visits["value"] == "2 / 3" and visits["percent"] == 66 and not visits["done"]
    page = await (await app.get("/app/view/missions", headers=auth(harness, MEMBER_ID))).text()
    assert '<progress max="100" value="66"' in page and "3 visits" in page and "+30 points" in page
    await harness.purchase(member.code, "10", "R-3")
    screen = await (await app.get("/app/api/missions", headers=auth(harness, MEMBER_ID))).json()
    visits = next(m for m in screen["missions"] if m["key"] == "visits")
    assert visits["done"] and visits["percent"] == 100
