"""Tiers: qualifying spend (or points earned) over a rolling window, never the spendable balance.

Promotion happens at once, on the purchase that crosses a level's ``enter`` threshold. Demotion happens only
at the periodic review (``review_tiers``, run by the scheduler): a member below their level's ``keep``
threshold is warned first, and demoted ``warning_days`` later if still below; climbing back clears the warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped
from sqlmodel import col
from sqlmodel.sql.sqltypes import UTCDateTime

from loyalty.program import Program, TierLevel
from storage.database import begin_write
from storage.models import Member, Purchase


def months_before(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    day = min(
        moment.day,
        [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][
            month
        ],
    )
    return moment.replace(year=year, month=month + 1, day=day)


def months_after(moment: datetime, months: int) -> datetime:
    return months_before(moment, -months)


def window_columns(
    basis: str, member_id: ColumnElement[Any] | Mapped[Any], count_pending: bool = True
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """Scalar subqueries for the qualifying total (raw: minor units or points) and the oldest purchase counted,
    over ``:since < occurred_at <= :now`` for ``member_id`` (a parameter, or the member row /balance reads).
    Without ``count_pending`` a purchase whose points are still pending (the return window) does not count yet."""
    if basis == "spend":
        value = col(Purchase.amount_minor) - col(Purchase.refunded_minor)
    else:
        value = col(Purchase.points) - col(Purchase.points) * col(Purchase.refunded_minor) / col(Purchase.amount_minor)
    now = bindparam("now", type_=UTCDateTime)
    window: tuple[ColumnElement[bool], ...] = (
        col(Purchase.member_id) == member_id,
        col(Purchase.occurred_at) > bindparam("since", type_=UTCDateTime),
        col(Purchase.occurred_at) <= now,
    )
    if not count_pending:
        window += (or_(col(Purchase.available_at).is_(None), col(Purchase.available_at) <= now),)
    return (
        select(func.coalesce(func.sum(value), 0)).where(*window).scalar_subquery(),
        select(func.min(col(Purchase.occurred_at))).where(*window).scalar_subquery(),
    )


def _window_statement(basis: str, count_pending: bool) -> Select[Any, Any]:
    return select(*window_columns(basis, bindparam("member_id", type_=Integer), count_pending))


_WINDOW = {
    (basis, pending): _window_statement(basis, pending) for basis in ("spend", "points") for pending in (True, False)
}


async def _window(
    session: AsyncSession, program: Program, member_id: int, now: datetime
) -> tuple[Decimal, datetime | None]:
    """Qualifying amount over the window, and the oldest purchase counted in it."""
    params = {"member_id": member_id, "since": window_start(program, now), "now": now}
    statement = _WINDOW[program.tiers.basis, counts_pending(program)]
    total, oldest = (await (await session.connection()).execute(statement, params)).one()
    return to_amount(program, total), oldest


def counts_pending(program: Program) -> bool:
    """Whether purchases count toward tiers while their points are pending (always, without a return window)."""
    return program.tiers.count_pending or not program.earn.pending_days


def window_start(program: Program, now: datetime) -> datetime:
    return months_before(now, program.tiers.window_months)


def to_amount(program: Program, raw_total: object) -> Decimal:
    total = Decimal(str(raw_total or 0))
    return total.scaleb(-program.minor_digits) if program.tiers.basis == "spend" else Decimal(int(total))


async def qualifying(session: AsyncSession, program: Program, member_id: int, now: datetime) -> Decimal:
    """Spend in currency units (net of refunds), or points earned by purchases, over the window."""
    return (await _window(session, program, member_id, now))[0]


def level_for(program: Program, amount: Decimal) -> TierLevel | None:
    reached = [level for level in program.tiers.levels if amount >= level.enter]
    return reached[-1] if reached else None


def rank(program: Program, name: str | None) -> int:
    names = [level.name for level in program.tiers.levels]
    return names.index(name) + 1 if name in names else 0


def multiplier(program: Program, tier: str | None) -> Decimal:
    level = program.tiers.level(tier)
    return level.multiplier if level else Decimal(1)


async def promote_if_earned(session: AsyncSession, program: Program, member: Member, now: datetime) -> TierLevel | None:
    """Inside a purchase's unit of work: move the member up at once if they crossed a threshold."""
    if not program.tiers.levels or member.id is None:
        return None
    earned = level_for(program, await qualifying(session, program, member.id, now))
    if earned is None or rank(program, earned.name) <= rank(program, member.tier):
        return None
    member.tier, member.tier_since, member.tier_warned_at = earned.name, now, None
    session.add(member)
    return earned


@dataclass(frozen=True)
class TierProgress:
    current: TierLevel | None
    next: TierLevel | None
    missing: Decimal  # how much more qualifying spend/points reaches ``next``
    by: datetime | None  # after this, the oldest counted purchase leaves the window


async def progress(
    session: AsyncSession, program: Program, member_id: int, tier: str | None, now: datetime
) -> TierProgress:
    amount, oldest = await _window(session, program, member_id, now)
    return progress_from(program, tier, amount, oldest)


def progress_from(program: Program, tier: str | None, amount: Decimal, oldest: datetime | None) -> TierProgress:
    current = program.tiers.level(tier)
    above = [level for level in program.tiers.levels if rank(program, level.name) > rank(program, tier)]
    if not above:
        return TierProgress(current, None, Decimal(0), None)
    by = months_after(oldest, program.tiers.window_months) if oldest else None
    return TierProgress(current, above[0], max(above[0].enter - amount, Decimal(0)), by)


@dataclass(frozen=True)
class Review:
    warned: list[tuple[int, TierLevel, Decimal, datetime]]  # member, level, short by, demotion date
    demoted: list[tuple[int, TierLevel, TierLevel | None]]  # member, from, to


async def review_tiers(session: AsyncSession, program: Program, now: datetime) -> Review:
    """The periodic evaluation: warn those falling short of keeping their tier, demote those warned long enough."""
    warned: list[tuple[int, TierLevel, Decimal, datetime]] = []
    demoted: list[tuple[int, TierLevel, TierLevel | None]] = []
    grace = timedelta(days=program.tiers.warning_days)
    members = (await session.execute(select(Member).where(col(Member.tier).is_not(None)))).scalars().all()
    for member in members:
        level = program.tiers.level(member.tier)
        assert member.id is not None
        if level is None:
            continue
        amount = await qualifying(session, program, member.id, now)
        await begin_write(session)
        if amount >= level.keep_threshold:
            if member.tier_warned_at is not None:
                member.tier_warned_at = None
                session.add(member)
        elif member.tier_warned_at is None:
            member.tier_warned_at = now
            session.add(member)
            warned.append((member.id, level, level.keep_threshold - amount, now + grace))
        elif now >= member.tier_warned_at + grace:
            # Down to the highest lower level the member still keeps (keep ≤ enter, so that covers "reaches").
            keep_lower = [
                lv
                for lv in program.tiers.levels
                if rank(program, lv.name) < rank(program, level.name) and amount >= lv.keep_threshold
            ]
            new = keep_lower[-1] if keep_lower else None
            member.tier, member.tier_since, member.tier_warned_at = (new.name if new else None), now, None
            session.add(member)
            demoted.append((member.id, level, new))
        await session.commit()
    return Review(warned, demoted)
