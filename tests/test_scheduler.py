"""Scheduled messages with a driven clock: on time, exactly once, across restarts and two schedulers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from loyalty.expiry import expire_points
from loyalty.profile import Birthday, set_birthday
from loyalty.program import BirthdayRules, Program, WinbackRules, load_program
from loyalty.winback import threshold
from notifications import reminders
from scheduler.service import Job, Scheduler
from storage.models import Coupon, Member
from tests.harness import ADMIN_ID, BotHarness

ANN = 1001


@pytest.fixture
def program() -> Program:
    return load_program().model_copy(
        update={
            "winback": WinbackRules(days=30, cooldown_days=14, max_nudges=2, bonus=50, bonus_days=7),
        }
    )


def _args(harness: BotHarness) -> tuple[object, ...]:
    return harness.bot, harness.sessions, harness.services.program, harness.dp["i18n"]


async def _join(harness: BotHarness, telegram_id: int = ANN, name: str = "Ann") -> Member:
    await harness.send(harness.user(telegram_id, name), "/start")
    member = await harness.member(telegram_id)
    assert member is not None
    return member


async def _birthday(harness: BotHarness, member: Member, month: int, day: int) -> None:
    assert member.id is not None
    async with harness.sessions() as session:
        await set_birthday(session, harness.services.program, member.id, Birthday(month, day), harness.clock())


def _birthday_texts(harness: BotHarness, chat_id: int = ANN) -> list[str]:
    return [t for t in harness.texts(harness.tg.calls, chat_id) if "Happy birthday" in t]


async def test_birthday_follows_the_local_day_and_hour_and_survives_a_restart(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _birthday(harness, ann, 11, 23)
    send = reminders.send_birthday_offers
    # 15:59 UTC on Nov 22 is 23:59 in Shanghai: not yet the birthday.
    assert await send(*_args(harness), datetime(2026, 11, 22, 15, 59, tzinfo=UTC)) == 0  # type: ignore[arg-type]
    # 16:00 UTC is midnight of Nov 23 in Shanghai: the birthday, but before the greeting hour (9:00).
    assert await send(*_args(harness), datetime(2026, 11, 22, 16, 0, tzinfo=UTC)) == 0  # type: ignore[arg-type]
    assert await send(*_args(harness), datetime(2026, 11, 23, 1, 0, tzinfo=UTC)) == 1  # type: ignore[arg-type]
    [text] = _birthday_texts(harness)
    assert "100 bonus points" in text and "Your coupon for Free latte" in text
    member = await harness.member(ANN)
    assert member is not None and member.points == 150
    # A restart mid-day (a new run of the job, later that day) sends nothing twice.
    assert await send(*_args(harness), datetime(2026, 11, 23, 4, 0, tzinfo=UTC)) == 0  # type: ignore[arg-type]
    async with harness.sessions() as session:
        coupons = (await session.execute(select(Coupon))).scalars().all()
    assert len(coupons) == 1 and len(_birthday_texts(harness)) == 1


async def test_birthday_at_local_midnight_with_an_early_hour(harness: BotHarness, program: Program) -> None:
    harness.services.programs.current = program.model_copy(update={"birthday": BirthdayRules(hour=0, bonus=10)})
    ann = await _join(harness)
    await _birthday(harness, ann, 11, 23)
    send = reminders.send_birthday_offers
    assert await send(*_args(harness), datetime(2026, 11, 22, 15, 59, 59, tzinfo=UTC)) == 0  # type: ignore[arg-type]
    assert await send(*_args(harness), datetime(2026, 11, 22, 16, 0, tzinfo=UTC)) == 1  # type: ignore[arg-type]


async def test_feb_29_birthdays_in_common_and_leap_years(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _birthday(harness, ann, 2, 29)
    send = reminders.send_birthday_offers
    at = [
        datetime(2027, 2, 27, 2, tzinfo=UTC),
        datetime(2027, 2, 28, 2, tzinfo=UTC),
        datetime(2028, 2, 28, 2, tzinfo=UTC),
        datetime(2028, 2, 29, 2, tzinfo=UTC),
    ]
    assert [await send(*_args(harness), now) for now in at] == [0, 1, 0, 1]  # type: ignore[arg-type]


async def test_a_member_who_joins_on_their_birthday_after_the_hour_still_gets_it(harness: BotHarness) -> None:
    send = reminders.send_birthday_offers
    assert await send(*_args(harness), datetime(2026, 11, 23, 1, 0, tzinfo=UTC)) == 0  # type: ignore[arg-type]
    harness.clock.now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 14:00 local
    ann = await _join(harness)
    await _birthday(harness, ann, 11, 23)
    assert await send(*_args(harness), datetime(2026, 11, 23, 6, 5, tzinfo=UTC)) == 1  # type: ignore[arg-type]


async def test_two_schedulers_send_once(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _birthday(harness, ann, 11, 23)
    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    ran: list[str] = []

    def job(name: str) -> Job:
        async def run(at: datetime) -> int:
            ran.append(name)
            return await reminders.send_birthday_offers(*_args(harness), at)  # type: ignore[arg-type]

        return Job("birthdays", timedelta(minutes=5), run)

    first = Scheduler(harness.sessions, [job("a")], holder="a", clock=lambda: now)
    second = Scheduler(harness.sessions, [job("b")], holder="b", clock=lambda: now)
    results = await asyncio.gather(first.run_job(first.jobs[0]), second.run_job(second.jobs[0]))
    assert sorted(results, key=str) == [1, None] and len(ran) == 1
    # Even without the lease (a lease lost mid-job), the UNIQUE claim lets one send.
    assert await reminders.send_birthday_offers(*_args(harness), now) == 0  # type: ignore[arg-type]
    assert len(_birthday_texts(harness)) == 1
    # The holder renews; the other takes over only once the lease has expired.
    holder = first if ran == ["a"] else second
    other = second if holder is first else first
    assert await other.holds_lease(now + timedelta(minutes=1)) is False
    assert await other.holds_lease(now + timedelta(minutes=3)) is True
    assert await holder.holds_lease(now + timedelta(minutes=3, seconds=1)) is False


async def test_winback_cadence_over_90_days(harness: BotHarness) -> None:
    start = harness.clock()
    ann = await _join(harness)
    nudged = []
    for day_number in range(1, 91):
        harness.clock.now = start + timedelta(days=day_number)
        if day_number == 50:
            calls = await harness.purchase(ann.code, "20", "W-1")  # within 7 days of the day-44 nudge
            assert any("Welcome back! +50 bonus points" in t for t in harness.texts(calls, ANN))
        if await reminders.send_winback_nudges(*_args(harness), harness.clock()):  # type: ignore[arg-type]
            nudged.append(day_number)
    # 30 days after joining, the cooldown of 14 days, at most two per lapse; the purchase starts a new lapse.
    assert nudged == [30, 44, 80]
    texts = [t for t in harness.texts(harness.tg.calls, ANN) if "We miss you" in t]
    assert len(texts) == 3 and "get 50 extra points" in texts[0]
    member = await harness.member(ANN)
    assert member is not None and member.points == 50 + 20 + 50


async def test_winback_skips_opted_out_and_blocked_members_and_marks_403s(harness: BotHarness) -> None:
    start = harness.clock()
    await _join(harness, 1001, "Ann")
    await _join(harness, 1002, "Bob")
    await _join(harness, 1003, "Cid")
    await harness.send(harness.user(1001, "Ann"), "/settings")
    await harness.press(harness.user(1001, "Ann"), "🔕 Turn promotions off")
    await harness.feed(harness.tg.my_chat_member_update(harness.user(1002, "Bob"), "kicked"))
    harness.tg.fail_for_chat(1003)  # Cid blocked the bot without us hearing of it
    now = start + timedelta(days=31)
    assert await reminders.send_winback_nudges(*_args(harness), now) == 0  # type: ignore[arg-type]
    cid = await harness.member(1003)
    assert cid is not None and cid.blocked_at is not None
    harness.tg.clear_faults()
    assert await reminders.send_winback_nudges(*_args(harness), now + timedelta(days=20)) == 0  # type: ignore[arg-type]
    attempts = [c for c in harness.tg.calls if "We miss you" in str(c.params.get("text"))]
    assert [(c.params["chat_id"], c.ok) for c in attempts] == [(1003, False)]  # one try, then skipped


async def test_a_429_waits_and_goes_on_and_other_errors_retry_next_run(harness: BotHarness) -> None:
    start = harness.clock()
    await _join(harness)
    harness.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    assert await reminders.send_winback_nudges(*_args(harness), start + timedelta(days=31)) == 1  # type: ignore[arg-type]
    harness.tg.fail_next("sendMessage", 500, "Internal Server Error")
    second = start + timedelta(days=45)
    assert await reminders.send_winback_nudges(*_args(harness), second) == 0  # type: ignore[arg-type]
    assert await reminders.send_winback_nudges(*_args(harness), second) == 1  # type: ignore[arg-type]
    assert await reminders.send_winback_nudges(*_args(harness), second + timedelta(days=30)) == 0  # type: ignore[arg-type]


def test_adaptive_threshold_follows_the_members_rhythm() -> None:
    program = load_program()  # days = 30, factor = 2.5
    day0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert threshold(program, 0, None, None) == timedelta(days=30)
    assert threshold(program, 3, day0, day0 + timedelta(days=40)) == timedelta(days=50)  # 20-day rhythm × 2.5
    assert threshold(program, 5, day0, day0 + timedelta(days=8)) == timedelta(days=30)  # never below days
    assert program.winback.factor == Decimal("2.5")


async def test_expiry_warning_once_and_expiry(harness: BotHarness) -> None:
    start = harness.clock()  # the welcome bonus expires in 365 days
    await _join(harness)
    send = reminders.send_expiry_warnings
    assert await send(*_args(harness), start + timedelta(days=357)) == 0  # type: ignore[arg-type]
    assert await send(*_args(harness), start + timedelta(days=358, hours=1)) == 1  # type: ignore[arg-type]
    assert "50 of your points expire on" in (harness.tg.last_text(ANN) or "")
    assert await send(*_args(harness), start + timedelta(days=359)) == 0  # type: ignore[arg-type]
    assert await expire_points(harness.sessions, start + timedelta(days=365, seconds=1)) == 50
    member = await harness.member(ANN)
    assert member is not None and member.points == 0


async def test_weekly_digest_once_a_week_for_admins(harness: BotHarness) -> None:
    harness.clock.now = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # a Wednesday of the week the digest covers
    await _join(harness)
    digest = reminders.send_weekly_digest
    args = (*_args(harness), harness.services.roles)
    monday_early = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # 07:00 Monday local: before 09:00
    assert await digest(*args, monday_early) == 0  # type: ignore[arg-type]
    assert await digest(*args, monday_early + timedelta(hours=3)) == 1  # type: ignore[arg-type]
    text = harness.tg.last_text(ADMIN_ID) or ""
    assert "New members: 1" in text and "Open support threads: 0" in text
    assert await digest(*args, monday_early + timedelta(days=1)) == 0  # type: ignore[arg-type]
    assert await digest(*args, monday_early + timedelta(days=6)) == 0  # type: ignore[arg-type]  # Sunday
    assert await digest(*args, monday_early + timedelta(days=7, hours=3)) == 1  # type: ignore[arg-type]


async def test_tier_review_warns_then_demotes_with_messages(harness: BotHarness) -> None:
    ann = await _join(harness)
    await harness.purchase(ann.code, "600", "T-1")  # Silver: enter 500, keep 400
    review = reminders.review_member_tiers
    later = harness.clock() + timedelta(days=400)  # the purchase has left the 12-month window
    assert await review(*_args(harness), later) == 1  # type: ignore[arg-type]
    assert "To keep your Silver status, earn CN¥400.00 more" in (harness.tg.last_text(ANN) or "")
    assert await review(*_args(harness), later + timedelta(days=1)) == 0  # type: ignore[arg-type]  # warned once
    assert await review(*_args(harness), later + timedelta(days=15)) == 1  # type: ignore[arg-type]
    assert "changed from Silver to member" in (harness.tg.last_text(ANN) or "")
    member = await harness.member(ANN)
    assert member is not None and member.tier is None


async def test_a_stopped_scheduler_gives_the_lease_back_and_the_next_runs_what_is_due_at_once(
    harness: BotHarness,
) -> None:
    """A deploy: the new scheduler starts while the old one still holds the lease. The old one stops gracefully
    and gives the lease back; the new one takes it at its next renewal and runs the jobs that found it taken at
    once, not an interval (5 minutes for birthdays) later."""
    ann = await _join(harness)
    await _birthday(harness, ann, 11, 23)
    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)

    def birthdays() -> Job:
        async def run(at: datetime) -> int:
            return await reminders.send_birthday_offers(*_args(harness), at)  # type: ignore[arg-type]

        return Job("birthdays", timedelta(minutes=5), run)

    old = Scheduler(harness.sessions, [], holder="old", clock=lambda: now)
    assert await old.holds_lease(now)
    new = Scheduler(harness.sessions, [birthdays()], holder="new", clock=lambda: now)
    new.start()
    try:
        await asyncio.sleep(0.5)  # its first runs find the lease taken
        assert _birthday_texts(harness) == []
        await old.stop()
        greeted = asyncio.Event()
        harness.tg.listeners.append(lambda _call: greeted.set() if _birthday_texts(harness) else None)
        assert await new.holds_lease_now()  # its next renewal (every 30 s) takes the lease...
        await asyncio.wait_for(greeted.wait(), 5)  # ...and the birthday goes out at once
    finally:
        await new.stop()
    assert len(_birthday_texts(harness)) == 1
    # The new one gave the lease back in turn: a third takes it at once.
    assert await Scheduler(harness.sessions, [], holder="third").holds_lease(now)
