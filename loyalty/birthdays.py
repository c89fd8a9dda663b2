"""Birthday offers: on the member's birthday in the program's timezone, from the configured local hour, once a year.

Feb 29 birthdays are celebrated on Feb 28 in common years. Selection is by state (a birthday today and no
notice for this year), not by the clock hitting an hour, so a scheduler that was down catches up when it starts,
and a member who joins (or sets their birthday) on the day still gets it that day.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.holdouts import draw_one, held_out
from loyalty.ledger import Kind
from loyalty.notices import sent
from loyalty.program import Program
from loyalty.rewards import Gift, give_gift
from storage.database import begin_write
from storage.models import Member

KIND = "birthday"


def celebrated_on(day: date) -> list[tuple[int, int]]:
    """The (month, day) birthdays celebrated on this local date."""
    days = [(day.month, day.day)]
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        days.append((2, 29))
    return days


def local_today(program: Program, now: datetime) -> tuple[date, int]:
    local = now.astimezone(program.tz)
    return local.date(), local.hour


def due(program: Program, now: datetime, limit: int = 500) -> Select[Member] | None:
    """Members to greet now; None before the greeting hour (or with birthdays off)."""
    today, hour = local_today(program, now)
    if not program.birthday.enabled or hour < program.birthday.hour:
        return None
    pairs = celebrated_on(today)
    return (
        select(Member)
        .where(
            # One (month, day) pair, or two on Feb 28 of a common year; the (birth_month, birth_day) index serves both.
            or_(*[and_(col(Member.birth_month) == month, col(Member.birth_day) == day) for month, day in pairs]),
            col(Member.blocked_at).is_(None),
            col(Member.erased_at).is_(None),
            ~sent(KIND, col(Member.telegram_id), str(today.year)),
            ~held_out(KIND, str(today.year), col(Member.id)),
        )
        # No ORDER BY: it would tempt the planner to walk the primary key past every member instead of
        # looking up today's birthdays on their index. Any order will do; the next run takes the rest.
        .limit(limit)
    )


async def hold_out(session: AsyncSession, program: Program, member: Member, year: int, now: datetime) -> bool:
    """This year's holdout draw for the member, committed before any offer goes: True if they get nothing this
    year (no greeting, points or coupon). Always False with ``[birthday] holdout = 0``."""
    assert member.id is not None
    if program.birthday.holdout <= 0:
        return False
    await begin_write(session)
    held = await draw_one(session, program, KIND, str(year), member.id, float(program.birthday.holdout), now, now)
    await session.commit()
    return held


async def give(session: AsyncSession, program: Program, member: Member, year: int, now: datetime) -> Gift:
    """The year's birthday bonus and coupon; the same member and year again gives nothing more."""
    assert member.id is not None
    rules = program.birthday
    return await give_gift(
        session,
        program,
        member.id,
        key=f"birthday:{member.id}:{year}",
        kind=Kind.BIRTHDAY,
        points=rules.bonus,
        reward=rules.reward,
        coupon_days=rules.coupon_days,
        now=now,
    )
