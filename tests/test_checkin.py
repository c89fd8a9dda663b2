"""Daily check-in end to end: once per local day (double taps, two devices), across the local midnight and a change
of the program's timezone, streak milestones, a broken streak made up, the monthly cap, new members, the
evening reminder."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from loyalty import checkin
from loyalty.ledger import Kind
from loyalty.privacy import erase
from loyalty.program import CheckinMilestone, CheckinRules, Program, load_program
from notifications.reminders import send_checkin_reminders
from storage.database import begin_write
from storage.models import Checkin, Coupon, LedgerEntry, Member
from tests.harness import BotHarness

ANN = 1001
RULES = CheckinRules(
    enabled=True,
    points=5,
    streak=[CheckinMilestone(day=3, points=10), CheckinMilestone(day=7, points=50, reward="latte")],
    makeup_cost=20,
    makeups_per_month=1,
    monthly_cap=0,
    min_member_hours=24,
    reminder_hour=20,
)


@pytest.fixture
def program() -> Program:
    return load_program().model_copy(update={"promotions": [], "checkin": RULES})


def _with(harness: BotHarness, **changes: Any) -> None:
    program: Program = harness.services.program
    harness.services.programs.current = program.model_copy(
        update={"checkin": program.checkin.model_copy(update=changes)}
    )


async def _join(harness: BotHarness, telegram_id: int = ANN, name: str = "Ann") -> Member:
    await harness.send(harness.user(telegram_id, name), "/start")
    member = await harness.member(telegram_id)
    assert member is not None
    return member


async def _checkin(harness: BotHarness, telegram_id: int = ANN) -> str:
    calls = await harness.send(harness.user(telegram_id), "/checkin")
    [text] = harness.texts(calls, telegram_id)
    return text


async def _points(harness: BotHarness, kind: str, telegram_id: int = ANN) -> int:
    async with harness.sessions() as session:
        total = (
            await session.execute(
                select(func.coalesce(func.sum(LedgerEntry.points), 0))
                .join(Member, Member.id == LedgerEntry.member_id)
                .where(Member.telegram_id == telegram_id, LedgerEntry.kind == kind)
            )
        ).scalar_one()
        member = (await session.execute(select(Member).where(Member.telegram_id == telegram_id))).scalar_one()
        ledger = (
            await session.execute(select(func.sum(LedgerEntry.points)).where(LedgerEntry.member_id == member.id))
        ).scalar_one()
    assert ledger == member.points, "ledger invariant"
    return int(total)


async def _balance(harness: BotHarness) -> int:
    member = await harness.member(ANN)
    assert member is not None
    return member.points


def _at_local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in November 2026, Shanghai time (UTC+8), in UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


async def test_once_per_local_day_across_midnight_with_milestones(harness: BotHarness) -> None:
    await _join(harness)
    assert "Daily check-in opens for you on" in await _checkin(harness)  # joined just now
    assert await _points(harness, Kind.CHECKIN) == 0

    harness.clock.now = _at_local(23, 12)
    text = await _checkin(harness)
    assert "Checked in! +5 points" in text and "Streak: 1 day in a row" in text
    assert "2 more days to the day-3 bonus: +10 points" in text
    assert "already checked in today" in await _checkin(harness)  # a double tap

    harness.clock.now = _at_local(23, 23, 59)
    assert "already checked in today" in await _checkin(harness)
    harness.clock.now = _at_local(24, 0, 1)  # past the local midnight: a new day
    assert "Streak: 2 days in a row" in await _checkin(harness)
    harness.clock.now = _at_local(25, 9)
    text = await _checkin(harness)
    assert "Day 3 of your streak: +10 points" in text and "Streak: 3 days" in text
    assert "4 more days to the day-7 bonus: +50 points and a coupon for Free latte" in text
    assert await _points(harness, Kind.CHECKIN) == 25

    for day in range(26, 30):  # days 4 to 7: the day-7 milestone pays points and a coupon, once
        harness.clock.now = _at_local(day, 9)
        text = await _checkin(harness)
    assert "Day 7 of your streak: +50 points" in text and "Your coupon:" in text
    assert await _points(harness, Kind.CHECKIN) == 25 + 4 * 5 + 50
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Coupon))).scalar_one() == 1


async def test_two_devices_at_once_check_in_once(harness: BotHarness) -> None:
    member = await _join(harness)
    now = harness.clock.now + timedelta(days=2)
    program: Program = harness.services.program

    async def tap() -> bool:
        async with harness.sessions() as session:
            return (await checkin.check_in(session, program, member.id or 0, now)).created

    results = await asyncio.gather(*(tap() for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    assert await _points(harness, Kind.CHECKIN) == 5
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Checkin))).scalar_one() == 1


async def test_a_timezone_change_between_two_checkins_reads_the_day_in_the_zone_in_force(harness: BotHarness) -> None:
    await _join(harness)
    harness.clock.now = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai, 00:30 on the 24th in Tokyo
    assert "Checked in!" in await _checkin(harness)
    harness.clock.advance(minutes=5)
    assert "already checked in today" in await _checkin(harness)  # still the 23rd in Shanghai

    program: Program = harness.services.program
    harness.services.programs.current = program.model_copy(update={"timezone": "Asia/Tokyo"})
    harness.clock.advance(minutes=5)  # 00:40 on the 24th in Tokyo: the next day
    assert "Streak: 2 days in a row" in await _checkin(harness)
    async with harness.sessions() as session:
        days = (await session.execute(select(Checkin.local_day).order_by(Checkin.local_day))).scalars().all()
    assert [d.isoformat() for d in days] == ["2026-11-23", "2026-11-24"]


async def test_a_broken_streak_made_up_for_points_once_and_within_the_monthly_allowance(harness: BotHarness) -> None:
    ann = harness.user(ANN)
    _with(harness, min_member_hours=0)
    member_id = (await _join(harness)).id or 0
    for day in (23, 24):
        harness.clock.now = _at_local(day, 10)
        await _checkin(harness)
    harness.clock.now = _at_local(26, 10)  # the 25th was missed
    async with harness.sessions() as session:
        status = await checkin.status(session, harness.services.program, member_id, harness.clock.now)
    assert status.streak == 0 and status.can_make_up  # read from the days, not a stored counter

    text = await _checkin(harness)
    assert "Streak: 1 day in a row" in text
    before = await _balance(harness)
    calls = await harness.press(ann, "🩹 Make up yesterday for 20 points")
    [edit] = [c for c in calls if c.method == "editMessageText"]
    text = edit.params["text"]
    assert "Yesterday is made up" in text and "Day 3 of your streak: +10 points" in text
    assert "Streak: 4 days in a row" in text
    assert await _balance(harness) == before - 20 + 10
    assert await _points(harness, Kind.MAKEUP) == -20

    # A double tap on the same button: yesterday is checked in, nothing is paid twice.
    async with harness.sessions() as session:
        again = await checkin.make_up(session, harness.services.program, member_id, harness.clock.now)
    assert not again.created
    assert await _points(harness, Kind.MAKEUP) == -20

    # A lone missed day with no streak before it is nothing to make up: not offered, and refused.
    harness.clock.now = _at_local(29, 10)  # the 27th and 28th missed
    async with harness.sessions() as session:
        lone = await checkin.status(session, harness.services.program, member_id, harness.clock.now)
        assert not lone.can_make_up
        with pytest.raises(checkin.CheckinRefused) as nothing:
            await checkin.make_up(session, harness.services.program, member_id, harness.clock.now)
    assert nothing.value.refusal is checkin.Refusal.NOTHING_TO_MAKE_UP

    harness.clock.now = _at_local(28, 10)  # the 27th missed: this month's one make-up is used
    await _checkin(harness)
    async with harness.sessions() as session:
        with pytest.raises(checkin.CheckinRefused) as refused:
            await checkin.make_up(session, harness.services.program, member_id, harness.clock.now)
    assert refused.value.refusal is checkin.Refusal.MAKEUP_LIMIT
    assert await _points(harness, Kind.MAKEUP) == -20

    harness.clock.now = _at_local(30, 10)
    await _checkin(harness)
    # Next month, a make-up the member cannot afford is refused with a clear message and changes nothing.
    harness.clock.now = datetime(2026, 12, 2, 2, tzinfo=UTC)  # 10:00 on Dec 2 in Shanghai; Dec 1 missed
    _with(harness, makeup_cost=100_000)
    await _checkin(harness)
    calls = await harness.press(ann, "🩹 Make up yesterday for 100000 points")
    [answer] = [c for c in calls if c.method == "answerCallbackQuery"]
    assert "You need 100000 points" in answer.params["text"]
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Checkin))).scalar_one() == 7


async def test_the_monthly_cap_limits_points_not_the_streak(harness: BotHarness) -> None:
    _with(harness, monthly_cap=12, min_member_hours=0)
    await _join(harness)
    for day, expected in ((23, 5), (24, 10), (25, 12), (26, 12)):
        harness.clock.now = _at_local(day, 10)
        text = await _checkin(harness)
        assert await _points(harness, Kind.CHECKIN) == expected
    assert "all paid; your streak still counts" in text and "Streak: 4 days" in text
    harness.clock.now = datetime(2026, 12, 1, 2, tzinfo=UTC)  # a new month in Shanghai
    await _checkin(harness)
    assert await _points(harness, Kind.CHECKIN) == 17


async def test_check_in_off_and_the_app_button_answers(harness: BotHarness) -> None:
    _with(harness, enabled=False)
    await _join(harness)
    harness.clock.advance(days=2)
    assert "not part of this program" in await _checkin(harness)
    calls = await harness.send(harness.user(ANN), "📅 Check in")  # the main-menu button
    assert "not part of this program" in harness.texts(calls, ANN)[0]


async def test_the_evening_reminder_once_a_day_only_to_who_asked_and_can_be_told(harness: BotHarness) -> None:
    ann, bob = harness.user(ANN), harness.user(1002, "Bob")
    await _join(harness)
    await _join(harness, 1002, "Bob")
    harness.clock.now = _at_local(24, 10)
    await _checkin(harness)
    calls = await harness.press(ann, "🔔 Remind me in the evening")
    assert any(c.method == "answerCallbackQuery" and "remind you" in c.params.get("text", "") for c in calls)
    await harness.send(bob, "/checkin")
    await harness.press(bob, "🔔 Remind me in the evening")
    async with harness.sessions() as session:
        await begin_write(session)
        member = (await session.execute(select(Member).where(Member.telegram_id == 1002))).scalar_one()
        member.promotions = False  # Bob turned promotions off: no reminder
        session.add(member)
        await session.commit()
    carl, dora = harness.user(1003, "Carl"), harness.user(1004, "Dora")
    for telegram_id, user in ((1003, carl), (1004, dora)):  # Carl will block the bot, Dora erase her data
        joined = await _join(harness, telegram_id, user["first_name"])
        async with harness.sessions() as session:
            await checkin.set_reminders(session, joined.id or 0, True)
    async with harness.sessions() as session:
        await begin_write(session)
        blocked = (await session.execute(select(Member).where(Member.telegram_id == 1003))).scalar_one()
        blocked.blocked_at = harness.clock.now
        session.add(blocked)
        dora_id = (await session.execute(select(Member.id).where(Member.telegram_id == 1004))).scalar_one()
        await session.commit()
    async with harness.sessions() as session:
        await erase(session, dora_id, harness.clock.now)

    _with(harness, min_member_hours=0)  # Carl and Dora joined today

    async def run(at: datetime) -> list[str]:
        before = len(harness.tg.calls)
        await send_checkin_reminders(harness.bot, harness.sessions, harness.services.program, harness.services.i18n, at)
        return harness.texts(harness.tg.calls[before:], ANN)

    assert await run(_at_local(25, 19)) == []  # before the reminder hour
    before = len(harness.tg.calls)
    [reminder] = await run(_at_local(25, 20, 5))
    told = {c.params["chat_id"] for c in harness.tg.calls[before:] if c.method == "sendMessage"}
    assert told == {ANN}  # not Bob (promotions off), Carl (blocked) or Dora (erased)
    assert "You have not checked in today" in reminder and "Streak: 1 day" in reminder
    assert await run(_at_local(25, 21)) == []  # once a day
    harness.clock.now = _at_local(26, 9)
    await _checkin(harness)
    assert await run(_at_local(26, 20, 5)) == []  # checked in already
    calls = await harness.send(ann, "/checkin")
    await harness.press(ann, "🔕 No evening reminders")
    assert await run(_at_local(27, 20, 5)) == []


@pytest.mark.parametrize(
    ("language", "checked_in", "streak"),
    [("zh-hans", "签到成功！+5 积分", "已连续签到 1 天"), ("zh-hant", "簽到成功！+5 積分", "已連續簽到 1 天")],
)
async def test_check_in_speaks_the_members_language(
    harness: BotHarness, language: str, checked_in: str, streak: str
) -> None:
    user = harness.user(ANN, language_code=language)
    await harness.send(user, "/start")
    harness.clock.advance(days=1, hours=1)
    [text] = harness.texts(await harness.send(user, "/checkin"), ANN)
    assert checked_in in text and streak in text
    [again] = harness.texts(await harness.send(user, "/missions"), ANN)
    assert "任务" in again or "任務" in again


async def test_check_ins_show_in_the_report_and_the_consoles_dashboard(harness: BotHarness) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from loyalty import metrics
    from loyalty.report import rows
    from tests.harness import ADMIN_ID
    from tests.test_miniapp import auth, services_with_app
    from web.server import make_http_app

    _with(harness, min_member_hours=0)
    await _join(harness)
    await _checkin(harness)
    harness.clock.advance(minutes=1)  # a period ends now, the check-in was made a moment ago
    program = harness.services.program
    period = metrics.parse_period("7d", harness.clock(), program.tz)
    assert period is not None
    board = await metrics.dashboard(harness.sessions, program, period)
    figures = {(a, b): v for a, b, v in rows(board, program)}
    assert figures[("check-in", "check-ins")] == 1 and figures[("check-in", "members checking in")] == 1
    server = TestServer(make_http_app(services_with_app(harness), serve_updates=True))
    async with TestClient(server) as client:
        answer = await client.get("/app/api/console/dashboard?period=7d", headers=auth(harness, ADMIN_ID))
        assert answer.status == 200, await answer.text()
        out = await answer.json()
    assert out["engagement"][0] == "📅 Check-ins: 1 · members checking in: 1"
    assert {"section": "check-in", "figure": "check-ins", "value": 1} in out["figures"]
