"""Daily check-in (签到): once per member and local day, streaks of consecutive days, milestones that pay once.

Rules, each enforced here and nowhere else:

- The day is the program's calendar day (``[checkin] day_starts`` moves its first hour), in the timezone in force
  at the moment of the check-in; the day is stored, so a later change of timezone never rewrites the past.
- ``UNIQUE(member, local_day)``: a double tap, a replay or two devices at once make one check-in and pay once.
- The streak is read from the stored days (consecutive days ending today, or yesterday when today is not done
  yet), never kept as a counter that could drift.
- A milestone pays when a check-in (or a make-up) first takes the streak to its day, keyed by the streak's first
  day and the milestone: the same streak never pays the same milestone twice.
- A make-up check-in for a missed yesterday costs ``makeup_cost`` points (a debit: refused, and nothing changed,
  when the member has fewer), at most ``makeups_per_month``; it earns nothing itself but keeps the streak.
- Check-ins pay at most ``monthly_cap`` points per local month (milestone points included; coupons are not
  points); beyond it a check-in still counts for the streak and missions.
- Members who joined less than ``min_member_hours`` ago cannot check in yet (fresh accounts farming points).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty import missions
from loyalty.ledger import InsufficientPoints, Kind, credit, debit
from loyalty.program import CheckinMilestone, Program
from loyalty.rewards import gift_coupon
from storage.database import begin_write, insert_once
from storage.models import Checkin, Coupon, Member, Notice

KIND = "checkin"  # the evening reminder's notice kind
STREAK_LOOKBACK = 400  # days read to measure a streak: longer than any milestone a program can name


class Refusal(StrEnum):
    OFF = "off"
    NOT_MEMBER = "not_member"
    TOO_NEW = "too_new"
    NO_MAKEUP = "no_makeup"  # make-up check-ins are off
    NOTHING_TO_MAKE_UP = "nothing_to_make_up"  # no streak to save (the day before yesterday missed too), or new
    MAKEUP_LIMIT = "makeup_limit"


class CheckinRefused(Exception):
    def __init__(self, refusal: Refusal, until: datetime | None = None) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal
        self.until = until  # TOO_NEW: from when the member may check in


def local_day(program: Program, at: datetime) -> date:
    """The check-in day ``at`` falls on: the program's local date, its first hour ``day_starts``."""
    return (at.astimezone(program.tz) - timedelta(hours=program.checkin.day_starts)).date()


def month_of(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following


def run_ending(days: set[date], last: date) -> tuple[int, date]:
    """The length and first day of the run of consecutive days ending on ``last`` (0 if ``last`` is missing)."""
    length, day = 0, last
    while day in days:
        length, day = length + 1, day - timedelta(days=1)
    return length, day + timedelta(days=1)


def current_run(days: set[date], today: date) -> tuple[int, date]:
    """The streak as a member sees it: through today if checked in, else through yesterday (still alive)."""
    return run_ending(days, today if today in days else today - timedelta(days=1))


async def days_of(session: AsyncSession, member_id: int, until: date) -> set[date]:
    rows = await session.execute(
        select(col(Checkin.local_day))
        .where(col(Checkin.member_id) == member_id, col(Checkin.local_day) <= until)
        .order_by(col(Checkin.local_day).desc())
        .limit(STREAK_LOOKBACK)
    )
    return {_as_date(day) for day in rows.scalars()}


def _as_date(value: date | datetime | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):  # pragma: no cover - SQLite hands back dates as dates through SQLAlchemy
        return date.fromisoformat(value)
    return value


@dataclass(frozen=True)
class Status:
    """What the member sees: today's check-in, the streak, the next milestone, whether a make-up is open."""

    enabled: bool
    today: date
    checked_in: bool
    streak: int
    next_milestone: CheckinMilestone | None
    points_today: int  # what checking in today pays (before the monthly cap)
    can_make_up: bool
    makeup_cost: int
    eligible_at: datetime | None  # a member too new to check in: from when they may

    @property
    def days_to_next(self) -> int:
        if self.next_milestone is None:
            return 0
        return self.next_milestone.day - self.streak


@dataclass(frozen=True)
class Milestone:
    day: int
    points: int
    coupon: Coupon | None


@dataclass(frozen=True)
class Result:
    created: bool  # False: this day was checked in already (a double tap, another device): nothing changed
    day: date
    points: int  # paid by this check-in, milestones included
    capped: bool  # the monthly cap held back some or all of it
    balance: int
    status: Status
    milestones: list[Milestone] = field(default_factory=list)
    missions: list[missions.Completion] = field(default_factory=list)


async def status(session: AsyncSession, program: Program, member_id: int, now: datetime) -> Status:
    rules = program.checkin
    today = local_day(program, now)
    member = await session.get(Member, member_id)
    if member is None:
        raise LookupError(member_id)
    days = await days_of(session, member_id, today)
    streak, _first = current_run(days, today)
    checked_in = today in days
    reaching = streak if checked_in else streak + 1
    upcoming = next((m for m in rules.streak if m.day > streak), None)
    milestone_today = next((m for m in rules.streak if m.day == reaching), None)
    yesterday = today - timedelta(days=1)
    can_make_up = (
        rules.enabled
        and rules.makeup_cost > 0
        and yesterday not in days
        and yesterday - timedelta(days=1) in days  # a streak to save: paying for a lone day buys nothing
        and yesterday >= local_day(program, member.joined_at)
        and await _makeups_in_month(session, member_id, today) < rules.makeups_per_month
    )
    eligible_at = member.joined_at + timedelta(hours=rules.min_member_hours)
    return Status(
        enabled=rules.enabled,
        today=today,
        checked_in=checked_in,
        streak=streak,
        next_milestone=upcoming,
        points_today=rules.points + (milestone_today.points if milestone_today else 0),
        can_make_up=can_make_up,
        makeup_cost=rules.makeup_cost,
        eligible_at=eligible_at if eligible_at > now else None,
    )


async def _member(session: AsyncSession, program: Program, member_id: int, now: datetime) -> Member:
    if not program.checkin.enabled:
        raise CheckinRefused(Refusal.OFF)
    member = await session.get(Member, member_id)
    if member is None or member.erased_at is not None:
        raise CheckinRefused(Refusal.NOT_MEMBER)
    until = member.joined_at + timedelta(hours=program.checkin.min_member_hours)
    if now < until:
        raise CheckinRefused(Refusal.TOO_NEW, until)
    return member


async def _makeups_in_month(session: AsyncSession, member_id: int, day: date) -> int:
    first, following = month_of(day)
    return int(
        (
            await session.execute(
                select(func.count()).where(
                    col(Checkin.member_id) == member_id,
                    col(Checkin.made_up).is_(True),
                    col(Checkin.local_day) >= first,
                    col(Checkin.local_day) < following,
                )
            )
        ).scalar_one()
    )


async def _paid_in_month(session: AsyncSession, member_id: int, day: date) -> int:
    first, following = month_of(day)
    return int(
        (
            await session.execute(
                select(func.coalesce(func.sum(col(Checkin.points)), 0)).where(
                    col(Checkin.member_id) == member_id,
                    col(Checkin.local_day) >= first,
                    col(Checkin.local_day) < following,
                )
            )
        ).scalar_one()
    )


async def _pay(
    session: AsyncSession,
    program: Program,
    member_id: int,
    row: Checkin,
    *,
    base: int,
    reached: tuple[int, int],
    first: date,
    now: datetime,
) -> tuple[int, bool, list[Milestone]]:
    """Pay ``base`` plus the milestones whose day lies in ``reached`` (old streak, new streak], within the cap."""
    rules = program.checkin
    old, new = reached
    milestones = [m for m in rules.streak if old < m.day <= new]
    due = base + sum(m.points for m in milestones)
    room = max(rules.monthly_cap - await _paid_in_month(session, member_id, row.local_day), 0)
    pay = min(due, room) if rules.monthly_cap else due
    assert row.id is not None
    if pay:
        await credit(
            session,
            member_id,
            pay,
            kind=Kind.CHECKIN,
            now=now,
            expires_at=program.expires_at(now),
            key=f"checkin:{row.id}",
        )
        row.points = pay
        session.add(row)
    paid: list[Milestone] = []
    left = pay - min(base, pay)
    for milestone in milestones:
        coupon = None
        if milestone.reward:
            coupon = await gift_coupon(
                session,
                member_id,
                milestone.reward,
                key=f"checkin-streak:{member_id}:{first.isoformat()}:{milestone.day}",
                now=now,
                days=milestone.coupon_days,
            )
        points = min(milestone.points, left)
        left -= points
        paid.append(Milestone(milestone.day, points, coupon))
    await session.flush()
    return pay, pay < due, paid


async def _new_day(session: AsyncSession, member_id: int, day: date, *, made_up: bool, now: datetime) -> Checkin | None:
    """The member's check-in row for ``day``, inserted now; None if there was one (a double tap, another device)."""
    inserted = await insert_once(
        session, Checkin, member_id=member_id, local_day=day, made_up=made_up, points=0, created_at=now
    )
    if not inserted:
        return None
    query = select(Checkin).where(col(Checkin.member_id) == member_id, col(Checkin.local_day) == day)
    return (await session.execute(query)).scalar_one()


async def check_in(session: AsyncSession, program: Program, member_id: int, now: datetime) -> Result:
    """Check the member in for today, once; a second call the same day changes nothing (``created`` False)."""
    await begin_write(session)
    await _member(session, program, member_id, now)
    today = local_day(program, now)
    row = await _new_day(session, member_id, today, made_up=False, now=now)
    if row is None:
        await session.rollback()
        return await _unchanged(session, program, member_id, today, now)
    days = await days_of(session, member_id, today)
    streak, first = run_ending(days, today)
    points, capped, milestones = await _pay(
        session,
        program,
        member_id,
        row,
        base=program.checkin.points,
        reached=(streak - 1, streak),
        first=first,
        now=now,
    )
    completed = await missions.evaluate(session, program, member_id, now, goals=("checkin_streak",))
    balance = await _balance(session, member_id)
    await session.commit()
    return Result(
        True, today, points, capped, balance, await status(session, program, member_id, now), milestones, completed
    )


async def make_up(session: AsyncSession, program: Program, member_id: int, now: datetime) -> Result:
    """Check in for a missed yesterday, paying ``makeup_cost`` points. Raises CheckinRefused, or InsufficientPoints
    with nothing changed; yesterday already checked in (a double tap) changes nothing (``created`` False)."""
    rules = program.checkin
    if rules.enabled and not rules.makeup_cost:
        raise CheckinRefused(Refusal.NO_MAKEUP)
    await begin_write(session)
    member = await _member(session, program, member_id, now)
    today = local_day(program, now)
    yesterday = today - timedelta(days=1)
    days = await days_of(session, member_id, today)
    if yesterday in days:
        await session.rollback()
        return await _unchanged(session, program, member_id, yesterday, now)
    if yesterday < local_day(program, member.joined_at) or yesterday - timedelta(days=1) not in days:
        raise CheckinRefused(Refusal.NOTHING_TO_MAKE_UP)
    if await _makeups_in_month(session, member_id, today) >= rules.makeups_per_month:
        raise CheckinRefused(Refusal.MAKEUP_LIMIT)
    old, _first = current_run(days, today)
    row = await _new_day(session, member_id, yesterday, made_up=True, now=now)
    if row is None:
        await session.rollback()
        return await _unchanged(session, program, member_id, yesterday, now)
    try:
        await debit(session, member_id, rules.makeup_cost, kind=Kind.MAKEUP, now=now, key=f"makeup:{row.id}")
    except InsufficientPoints:
        await session.rollback()
        raise
    days.add(yesterday)
    new, first = current_run(days, today)
    points, capped, milestones = await _pay(
        session, program, member_id, row, base=0, reached=(old, new), first=first, now=now
    )
    completed = await missions.evaluate(session, program, member_id, now, goals=("checkin_streak",))
    balance = await _balance(session, member_id)
    await session.commit()
    return Result(
        True, yesterday, points, capped, balance, await status(session, program, member_id, now), milestones, completed
    )


async def _unchanged(session: AsyncSession, program: Program, member_id: int, day: date, now: datetime) -> Result:
    current = await status(session, program, member_id, now)
    return Result(False, day, 0, False, await _balance(session, member_id), current)


async def _balance(session: AsyncSession, member_id: int) -> int:
    return int((await session.execute(select(col(Member.points)).where(col(Member.id) == member_id))).scalar_one())


async def set_reminders(session: AsyncSession, member_id: int, on: bool) -> None:
    """The member's opt-in evening reminder; setting it twice is harmless."""
    await begin_write(session)
    member = await session.get(Member, member_id)
    if member is None:
        raise LookupError(member_id)
    member.checkin_reminders = on
    session.add(member)
    await session.commit()


async def reminders_on(session: AsyncSession, member_id: int) -> bool:
    value = (await session.execute(select(col(Member.checkin_reminders)).where(col(Member.id) == member_id))).scalar()
    return bool(value)


def reminders_due(program: Program, now: datetime, limit: int = 500) -> Select[Member] | None:
    """Members to remind now: opted in, reachable with promotions on, not checked in today; None before the
    program's ``reminder_hour`` (or with check-in off). Each is claimed as a notice for the day, so once a day."""
    rules = program.checkin
    local = now.astimezone(program.tz)
    if not rules.enabled or local.hour < rules.reminder_hour:
        return None
    today = local_day(program, now)
    done = exists().where(and_(col(Checkin.member_id) == col(Member.id), col(Checkin.local_day) == today))
    # Reminded today already (claimed by this or another scheduler): not selected again, so the batch moves on.
    told = exists().where(
        and_(
            col(Notice.kind) == KIND,
            col(Notice.telegram_id) == col(Member.telegram_id),
            col(Notice.period) == today.isoformat(),
        )
    )
    return (
        select(Member)
        .where(
            col(Member.checkin_reminders).is_(True),
            col(Member.promotions).is_(True),
            col(Member.blocked_at).is_(None),
            col(Member.erased_at).is_(None),
            col(Member.joined_at) <= now - timedelta(hours=rules.min_member_hours),
            ~done,
            ~told,
        )
        .order_by(col(Member.id))
        .limit(limit)
    )


async def checkins_between(session: AsyncSession, start: datetime, end: datetime) -> int:
    """Check-ins made in a window (the figures)."""
    return int(
        (
            await session.execute(
                select(func.count()).where(col(Checkin.created_at) >= start, col(Checkin.created_at) < end)
            )
        ).scalar_one()
    )
