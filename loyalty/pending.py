"""Pending points: a purchase's points held for the return window (``[earn] pending_days``) before they can be spent.

"Buy, earn, return, keep the points" does not work when the points of a purchase wait until it can no longer be
returned. While they wait they are the purchase's ``pending_points`` (and, summed, the member's): not in the
balance, not spendable, not expiring, not in the ledger. A refund inside the window cancels them there, so no debt
arises. When the window ends, the release job credits what is left as the purchase's lot, with the purchase's
usual key (``purchase:<id>``), so a release happens once whoever runs it, and its expiry counts from then.

Invariant, kept in every transaction that touches them: ``member.pending_points`` is the sum of their purchases'
``pending_points``; a purchase's pending points never exceed its points less what refunds took back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.ledger import Kind, credit, find_by_key
from loyalty.program import Program, TierLevel
from loyalty.tiers import promote_if_earned
from storage.database import SessionFactory, begin_write
from storage.models import Member, Purchase


def available_at(program: Program, now: datetime) -> datetime | None:
    """When the points of a purchase recorded ``now`` become available; None: at once."""
    days = program.earn.pending_days
    return now + timedelta(days=days) if days else None


async def hold(session: AsyncSession, purchase: Purchase, points: int, until: datetime) -> None:
    """Inside the purchase's unit of work: its ``points`` wait until ``until``."""
    purchase.available_at, purchase.pending_points = until, points
    session.add(purchase)
    await session.execute(
        update(Member)
        .where(col(Member.id) == purchase.member_id)
        .values(pending_points=col(Member.pending_points) + points)
    )


async def cancel(session: AsyncSession, purchase: Purchase, points: int) -> int:
    """Inside a refund's unit of work (the purchase row locked): cancel up to ``points`` of what the purchase still
    has pending. Returns how many were cancelled; the rest must be taken back from the balance."""
    cancelled = min(points, purchase.pending_points)
    if cancelled:
        purchase.pending_points -= cancelled
        session.add(purchase)
        await session.execute(
            update(Member)
            .where(col(Member.id) == purchase.member_id)
            .values(pending_points=col(Member.pending_points) - cancelled)
        )
    return cancelled


@dataclass(frozen=True)
class Released:
    member_id: int
    points: int
    balance: int
    promoted: TierLevel | None


async def release(session: AsyncSession, program: Program, purchase_id: int, now: datetime) -> Released | None:
    """Make a purchase's pending points available if its window has ended, and commit. None if there was nothing
    to release (not due, cancelled by refunds, or released already by another run)."""
    await begin_write(session)
    purchase = (
        await session.execute(select(Purchase).where(col(Purchase.id) == purchase_id).with_for_update())
    ).scalar_one_or_none()
    due = purchase is not None and purchase.available_at is not None and purchase.available_at <= now
    if purchase is None or purchase.id is None or not due or purchase.pending_points <= 0:
        await session.rollback()
        return None
    points, key = purchase.pending_points, f"purchase:{purchase.id}"
    if await find_by_key(session, key) is not None:  # pragma: no cover - the lot and the release commit together
        await session.rollback()
        return None
    await cancel(session, purchase, points)
    assert purchase.available_at is not None
    _, balance = await credit(
        session,
        purchase.member_id,
        points,
        kind=Kind.PURCHASE,
        now=now,
        expires_at=program.expires_at(purchase.available_at),
        purchase_id=purchase.id,
        key=key,
    )
    member = await session.get(Member, purchase.member_id)
    assert member is not None
    # A purchase counts toward tiers once its points are available (unless [tiers] count_pending): now.
    promoted = await promote_if_earned(session, program, member, now)
    await session.commit()
    return Released(purchase.member_id, points, balance, promoted)


async def due(session: AsyncSession, now: datetime, limit: int = 500) -> list[int]:
    """Purchases whose pending points are due, soonest first (the partial index ``ix_purchase_pending``)."""
    # The 0 written into the SQL, as the partial index says it (see ``loyalty.ledger.open_lot``).
    query = (
        select(col(Purchase.id))
        .where(col(Purchase.pending_points) > literal_column("0"), col(Purchase.available_at) <= now)
        .order_by(col(Purchase.available_at))
        .limit(limit)
    )
    return [purchase_id for purchase_id in (await session.execute(query)).scalars() if purchase_id is not None]


async def release_due(session: AsyncSession, program: Program, now: datetime) -> list[Released]:
    """The release job: every purchase whose window has ended, one per transaction."""
    released: list[Released] = []
    while purchase_ids := await due(session, now):
        await session.commit()
        done = [r for purchase_id in purchase_ids if (r := await release(session, program, purchase_id, now))]
        if not done:  # pragma: no cover - every due purchase is released or cancelled in between
            break
        released += done
    await session.commit()
    return released


async def release_points(sessions: SessionFactory, program: Program, now: datetime) -> int:
    """The scheduler's job: points whose return window has ended become available (nothing is sent: the balance
    shows them). Returns the points released."""
    async with sessions() as session:
        return sum(released.points for released in await release_due(session, program, now))


@dataclass(frozen=True)
class Pending:
    """What a member has pending, as /balance and the app show it."""

    points: int
    next_at: datetime | None  # when the soonest pending points become available
    next_points: int  # how many become available then (purchases due the same day together)


NOTHING_PENDING = Pending(0, None, 0)


async def pending_of(session: AsyncSession, member_id: int, tz: ZoneInfo) -> Pending:
    """The member's pending points, and how many become available next (on the local day of the soonest)."""
    rows = (
        await session.execute(
            select(col(Purchase.available_at), col(Purchase.pending_points))
            .where(col(Purchase.member_id) == member_id, col(Purchase.pending_points) > 0)
            .order_by(col(Purchase.available_at))
        )
    ).all()
    if not rows or rows[0][0] is None:
        return NOTHING_PENDING
    first: datetime = rows[0][0]
    day = first.astimezone(tz).date()
    same_day = sum(int(points) for at, points in rows if at is not None and at.astimezone(tz).date() == day)
    return Pending(sum(int(points) for _, points in rows), first, same_day)


async def total_pending(session: AsyncSession, member_id: int) -> int:
    """The sum the member row caches, counted from the purchases (the invariant's other side)."""
    total = select(func.coalesce(func.sum(col(Purchase.pending_points)), 0)).where(col(Purchase.member_id) == member_id)
    return int((await session.execute(total)).scalar_one())
