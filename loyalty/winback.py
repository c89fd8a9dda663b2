"""Win-back: nudging members who stop coming, at most ``max_nudges`` times per lapse, ``cooldown_days`` apart.

Each member carries ``next_nudge_at``, the moment to look at them again; selection is an index range on it,
so the work grows with the members due, not with all members. Joining and every purchase plan the next look
(a purchase ends the lapse and resets the count). When a member comes up, their real last activity is checked
first: if they are not lapsed after all (the rules changed, say), the next look is simply moved.

A lapse is named by the member's last activity; nudge *n* of a lapse is claimed as a notice, so two schedulers
never send the same nudge, and advancing the member's count is conditional on the count it saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.holdouts import draw_one
from loyalty.ledger import Kind, credit
from loyalty.program import Program
from loyalty.rewards import gift_coupon
from storage.database import begin_write
from storage.models import Coupon, Member, Purchase

KIND = "winback"


def threshold(program: Program, purchases: int, first: datetime | None, last: datetime | None) -> timedelta:
    """How long without a purchase makes this member lapsed: fixed days, or their own rhythm × factor."""
    rules = program.winback
    fixed = timedelta(days=rules.days)
    if rules.factor is None or purchases < 2 or first is None or last is None:
        return fixed
    average = (last - first) / (purchases - 1)
    return max(fixed, average * float(Decimal(rules.factor)))


async def lapse_of(session: AsyncSession, program: Program, member: Member) -> tuple[datetime, timedelta]:
    """The member's last activity (last purchase, else joining) and how long after it they count as lapsed."""
    count, first, last = (
        await session.execute(
            select(func.count(), func.min(col(Purchase.created_at)), func.max(col(Purchase.created_at))).where(
                col(Purchase.member_id) == member.id
            )
        )
    ).one()
    return (last or member.joined_at), threshold(program, int(count), first, last)


async def plan(session: AsyncSession, program: Program, member: Member) -> None:
    """After joining or a purchase (inside the caller's unit of work): the lapse clock starts again."""
    last, limit = await lapse_of(session, program, member)
    member.next_nudge_at, member.winback_nudges = last + limit, 0
    session.add(member)


def due(now: datetime, limit: int = 500) -> Select[Member]:
    """Members whose next look is due, who still take promotions and can be messaged."""
    return (
        select(Member)
        .where(
            col(Member.next_nudge_at) <= now,
            col(Member.promotions).is_(True),
            col(Member.blocked_at).is_(None),
            col(Member.erased_at).is_(None),
        )
        .order_by(col(Member.next_nudge_at))
        .limit(limit)
    )


@dataclass(frozen=True)
class Nudge:
    member_id: int
    number: int  # 1 for the first nudge of this lapse
    lapse: str  # names the lapse: the member's last activity
    bonus: int
    bonus_until: datetime | None
    coupon: Coupon | None


async def prepare(session: AsyncSession, program: Program, member: Member, now: datetime) -> Nudge | None:
    """Look at a due member: the nudge to send now, or None after moving (or clearing) their next look."""
    assert member.id is not None
    member_id, rules = member.id, program.winback
    await begin_write(session)
    # The batch was read a while ago: a purchase, an opt-out or a block since then must count.
    fresh = await session.get(Member, member_id, populate_existing=True)
    if fresh is None or not fresh.promotions or fresh.blocked_at is not None or fresh.erased_at is not None:
        await session.rollback()
        return None
    member = fresh
    last, limit = await lapse_of(session, program, member)
    if not rules.enabled or member.winback_nudges >= rules.max_nudges:
        member.next_nudge_at = None
    elif member.winback_nudges == 0 and now < last + limit:
        member.next_nudge_at = last + limit  # not lapsed after all
    elif member.winback_nudges == 0 and await draw_one(
        session, program, KIND, last.isoformat(), member_id, float(rules.holdout), now, now
    ):
        member.next_nudge_at = None  # held out for this lapse: no nudge, bonus or coupon; a purchase plans anew
    else:
        number, lapse = member.winback_nudges + 1, last.isoformat()
        coupon = None
        if rules.reward:
            coupon = await gift_coupon(
                session,
                member_id,
                rules.reward,
                key=f"winback:{member_id}:{lapse}:{number}",
                now=now,
                days=rules.coupon_days,
            )
        await session.commit()
        until = now + timedelta(days=rules.bonus_days) if rules.bonus else None
        return Nudge(member_id, number, lapse, rules.bonus, until, coupon)
    session.add(member)
    await session.commit()
    return None


async def advance(session: AsyncSession, program: Program, nudge: Nudge, now: datetime) -> bool:
    """Record that nudge *n* went out: plan the next one (or none) and open its bonus window. Conditional on
    the count being *n − 1*, so a second scheduler (or a retry) cannot advance it twice."""
    rules = program.winback
    await begin_write(session)
    values: dict[str, object] = {
        "winback_nudges": nudge.number,
        "next_nudge_at": now + timedelta(days=rules.cooldown_days) if nudge.number < rules.max_nudges else None,
    }
    if nudge.bonus:
        values.update(winback_bonus=nudge.bonus, winback_bonus_until=nudge.bonus_until)
    moved = (
        await session.execute(
            update(Member)
            .where(col(Member.id) == nudge.member_id, col(Member.winback_nudges) == nudge.number - 1)
            .values(**values)
        )
    ).rowcount  # type: ignore[attr-defined]
    await session.commit()
    return bool(moved)


async def on_purchase(
    session: AsyncSession, program: Program, member: Member, purchase: Purchase, now: datetime
) -> int:
    """Inside the purchase's unit of work: pay a win-back bonus still open, then start the lapse clock again."""
    paid = 0
    if member.winback_bonus and member.winback_bonus_until is not None and now <= member.winback_bonus_until:
        assert member.id is not None
        paid = member.winback_bonus
        await credit(
            session,
            member.id,
            paid,
            kind=Kind.WINBACK,
            now=now,
            expires_at=program.expires_at(now),
            purchase_id=purchase.id,
            key=f"winback:{purchase.id}",
        )
    member.winback_bonus, member.winback_bonus_until = 0, None
    await plan(session, program, member)
    return paid
