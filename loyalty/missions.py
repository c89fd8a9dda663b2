"""Missions: goals that pay once when reached ("3 purchases this month", "a 7-day check-in streak").

Rules, each enforced here and nowhere else:

- A mission runs per local calendar week (from Monday) or month, or between two dates (``starts``..``ends``
  inclusive), in the program's timezone; its window is named by its first local day.
- Progress is always computed from what happened: purchases (occurred in the window, net of refunds; a fully
  refunded purchase does not count), qualified referrals (not held, not rejected), check-in days. No counter
  can drift from the ledger.
- ``UNIQUE(member, mission, period)`` in ``mission_payment``: reached is paid once, under replays and concurrent
  purchases. Each payment's points are a ledger entry with its own key.
- A refund before payment simply leaves the goal unreached. A refund that undoes a paid goal takes its points
  back like other refunded points (``ledger.claw_back``: from the member's lots, else a debt); the payment is
  marked clawed back, and reaching the goal again in the same period pays again. A coupon already given stays.
- ``tiers`` limit a mission to members at those tiers; ``stores`` count only purchases recorded there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import distinct, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.ledger import Kind, claw_back, credit
from loyalty.program import MissionRule, Program
from loyalty.rewards import gift_coupon
from storage.database import begin_write, insert_once
from storage.models import Checkin, Coupon, Member, MissionPayment, Purchase, Referral

PURCHASE_GOALS = ("purchases", "spend", "categories")
REFUNDABLE_GOALS = (*PURCHASE_GOALS, "referrals")


@dataclass(frozen=True)
class Window:
    first_day: date  # local: names the period in the payment's key
    last_day: date  # local, inclusive
    start: datetime  # UTC bounds of the local days
    end: datetime


def _local_midnight(program: Program, day: date) -> datetime:
    return datetime.combine(day, time(), program.tz)


def window_from(program: Program, rule: MissionRule, first_day: date) -> Window:
    """The window a period starting on ``first_day`` spans."""
    if rule.period == "week":
        following = first_day + timedelta(days=7)
    elif rule.period == "month":
        following = (first_day.replace(day=1) + timedelta(days=32)).replace(day=1)
    else:
        assert rule.ends is not None
        following = rule.ends + timedelta(days=1)
    return Window(
        first_day,
        following - timedelta(days=1),
        _local_midnight(program, first_day),
        _local_midnight(program, following),
    )


def window(program: Program, rule: MissionRule, now: datetime) -> Window | None:
    """The mission's window containing ``now``, or None when a dated mission is not running."""
    today = now.astimezone(program.tz).date()
    if rule.period == "week":
        return window_from(program, rule, today - timedelta(days=today.weekday()))
    if rule.period == "month":
        return window_from(program, rule, today.replace(day=1))
    assert rule.starts is not None and rule.ends is not None
    if not rule.starts <= today <= rule.ends:
        return None
    return window_from(program, rule, rule.starts)


def applies(rule: MissionRule, member: Member) -> bool:
    return rule.tiers is None or member.tier in rule.tiers


@dataclass(frozen=True)
class Progress:
    rule: MissionRule
    window: Window
    value: Decimal  # a count, an amount in the currency (spend) or a number of days
    paid: bool

    @property
    def reached(self) -> bool:
        return self.value >= self.rule.target

    @property
    def percent(self) -> int:
        return min(int(self.value * 100 / self.rule.target), 100)


@dataclass(frozen=True)
class Completion:
    rule: MissionRule
    points: int
    coupon: Coupon | None


def _longest_run(days: Iterable[date]) -> int:
    best = run = 0
    previous: date | None = None
    for day in sorted(set(days)):
        run = run + 1 if previous is not None and day - previous == timedelta(days=1) else 1
        best, previous = max(best, run), day
    return best


async def measure(session: AsyncSession, program: Program, rule: MissionRule, member_id: int, span: Window) -> Decimal:
    """How far the member got towards the mission in the window, from the purchases, referrals and check-ins."""
    if rule.goal in PURCHASE_GOALS:
        kept = col(Purchase.refunded_minor) < col(Purchase.amount_minor)
        where = [
            col(Purchase.member_id) == member_id,
            col(Purchase.occurred_at) >= span.start,
            col(Purchase.occurred_at) < span.end,
        ]
        if rule.stores is not None:
            where.append(col(Purchase.store).in_(rule.stores))
        if rule.goal == "purchases":
            query = select(func.count()).where(*where, kept)
        elif rule.goal == "categories":
            query = select(func.count(distinct(col(Purchase.category)))).where(
                *where, kept, col(Purchase.category).is_not(None)
            )
        else:
            query = select(func.coalesce(func.sum(col(Purchase.amount_minor) - col(Purchase.refunded_minor)), 0)).where(
                *where
            )
        value = int((await session.execute(query)).scalar_one())
        return Decimal(value).scaleb(-program.minor_digits) if rule.goal == "spend" else Decimal(value)
    if rule.goal == "referrals":
        count = (
            await session.execute(
                select(func.count()).where(
                    col(Referral.referrer_id) == member_id,
                    col(Referral.qualified_at) >= span.start,
                    col(Referral.qualified_at) < span.end,
                    func.coalesce(col(Referral.review), "approved") == "approved",
                )
            )
        ).scalar_one()
        return Decimal(int(count))
    days = (
        await session.execute(
            select(col(Checkin.local_day)).where(
                col(Checkin.member_id) == member_id,
                col(Checkin.local_day) >= span.first_day,
                col(Checkin.local_day) <= span.last_day,
            )
        )
    ).scalars()
    return Decimal(_longest_run(days))


async def _payment(session: AsyncSession, member_id: int, key: str, first_day: date) -> MissionPayment | None:
    return (
        await session.execute(
            select(MissionPayment).where(
                col(MissionPayment.member_id) == member_id,
                col(MissionPayment.mission_key) == key,
                col(MissionPayment.period_start) == first_day,
            )
        )
    ).scalar_one_or_none()


async def progress(session: AsyncSession, program: Program, member_id: int, now: datetime) -> list[Progress]:
    """The member's running missions and how far they got, in the program's order (read only)."""
    member = await session.get(Member, member_id)
    if member is None:
        raise LookupError(member_id)
    shown = []
    for rule in program.missions:
        span = window(program, rule, now)
        if span is None or not applies(rule, member):
            continue
        payment = await _payment(session, member_id, rule.key, span.first_day)
        paid = payment is not None and payment.clawed_back_at is None
        shown.append(Progress(rule, span, await measure(session, program, rule, member_id, span), paid))
    return shown


async def evaluate(
    session: AsyncSession, program: Program, member_id: int, now: datetime, goals: Iterable[str] | None = None
) -> list[Completion]:
    """Pay every running mission the member has reached and not been paid for (inside the caller's unit of work:
    a purchase, a check-in, a referral qualifying, or /missions opened). ``goals``: only missions of these kinds."""
    wanted = set(goals) if goals is not None else None
    if not program.missions or (wanted is not None and not any(m.goal in wanted for m in program.missions)):
        return []
    completed = []
    for item in await progress(session, program, member_id, now):
        if item.paid or not item.reached or (wanted is not None and item.rule.goal not in wanted):
            continue
        if (done := await _pay(session, program, member_id, item, now)) is not None:
            completed.append(done)
    return completed


async def settle(session: AsyncSession, program: Program, member_id: int, now: datetime) -> list[Completion]:
    """Outside a unit of work (/missions opened, the app's screen): pay what is reached and unpaid (a mission added
    to the program after the purchases that reach it, say) in a write of its own; a plain read otherwise."""
    if not any(item.reached and not item.paid for item in await progress(session, program, member_id, now)):
        return []
    await session.rollback()  # the read ends; the write below reads everything again under its lock
    await begin_write(session)
    done = await evaluate(session, program, member_id, now)
    await session.commit()
    return done


async def _pay(
    session: AsyncSession, program: Program, member_id: int, item: Progress, now: datetime
) -> Completion | None:
    rule, first_day = item.rule, item.window.first_day
    values = dict(member_id=member_id, mission_key=rule.key, period_start=first_day, points=rule.points)
    if await insert_once(session, MissionPayment, **values, times=1, created_at=now):
        times = 1
    else:
        # Paid before, then taken back by a refund: reached again, it pays again; a concurrent payer or a replay
        # finds it paid (the update matches nothing) and pays nothing.
        again = (
            await session.execute(
                update(MissionPayment)
                .where(
                    col(MissionPayment.member_id) == member_id,
                    col(MissionPayment.mission_key) == rule.key,
                    col(MissionPayment.period_start) == first_day,
                    col(MissionPayment.clawed_back_at).is_not(None),
                )
                .values(clawed_back_at=None, times=col(MissionPayment.times) + 1, points=rule.points)
                .returning(col(MissionPayment.times))
            )
        ).scalar_one_or_none()
        if again is None:
            return None
        times = int(again)
    key = f"mission:{member_id}:{rule.key}:{first_day.isoformat()}"
    if rule.points:
        await credit(
            session,
            member_id,
            rule.points,
            kind=Kind.MISSION,
            now=now,
            expires_at=program.expires_at(now),
            key=f"{key}:{times}",
            reason=rule.key,
        )
    coupon = None
    if rule.reward and times == 1:  # a coupon is not taken back, so it is not given twice either
        coupon = await gift_coupon(session, member_id, rule.reward, key=key, now=now, days=rule.coupon_days)
    await session.flush()
    return Completion(rule, rule.points, coupon)


async def on_refund(session: AsyncSession, program: Program, member_ids: Iterable[int], now: datetime) -> int:
    """Inside a refund's unit of work: take back the points of paid missions the refund undid (the buyer's
    purchase goals, the referrer's referral goals). Returns the points taken back."""
    rules = {rule.key: rule for rule in program.missions if rule.goal in REFUNDABLE_GOALS}
    if not rules:
        return 0
    taken = 0
    for member_id in set(member_ids):
        payments = (
            await session.execute(
                select(MissionPayment).where(
                    col(MissionPayment.member_id) == member_id,
                    col(MissionPayment.mission_key).in_(list(rules)),
                    col(MissionPayment.clawed_back_at).is_(None),
                )
            )
        ).scalars()
        for payment in list(payments):
            rule = rules[payment.mission_key]
            span = window_from(program, rule, payment.period_start)
            if await measure(session, program, rule, member_id, span) >= rule.target:
                continue
            claimed = (
                await session.execute(
                    update(MissionPayment)
                    .where(col(MissionPayment.id) == payment.id, col(MissionPayment.clawed_back_at).is_(None))
                    .values(clawed_back_at=now)
                )
            ).rowcount  # type: ignore[attr-defined]
            if claimed and payment.points:
                await claw_back(
                    session,
                    member_id,
                    payment.points,
                    now=now,
                    from_lots=[],
                    key=f"mission-refund:{payment.id}:{payment.times}",
                    reason=f"mission {rule.key}",
                )
                taken += payment.points
    await session.flush()
    return taken


@dataclass(frozen=True)
class Rate:
    rule: MissionRule
    completed: int  # members paid (and not taken back) for it, in periods starting within the window
    members: int  # members it was open to (not erased, joined before the window ended)

    @property
    def percent(self) -> float:
        return 100 * self.completed / self.members if self.members else 0.0


async def completion_rates(session: AsyncSession, program: Program, start: datetime, end: datetime) -> list[Rate]:
    """Each mission's completions paid within ``start``..``end`` and the share of members that is (the figures)."""
    if not program.missions:
        return []
    members = int(
        (
            await session.execute(
                select(func.count()).where(col(Member.erased_at).is_(None), col(Member.joined_at) < end)
            )
        ).scalar_one()
    )
    counts = dict(
        (
            await session.execute(
                select(col(MissionPayment.mission_key), func.count())
                .where(
                    col(MissionPayment.created_at) >= start,
                    col(MissionPayment.created_at) < end,
                    col(MissionPayment.clawed_back_at).is_(None),
                )
                .group_by(col(MissionPayment.mission_key))
            )
        ).all()
    )
    return [Rate(rule, int(counts.get(rule.key, 0)), members) for rule in program.missions]
