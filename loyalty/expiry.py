"""Expiry warnings: tell members once, ``warn_days`` before points expire, how many and when.

Each warned lot is claimed as a notice (period = the lot's id), so the selection skips lots already warned
about with an index lookup, a member with several lots expiring gets one message covering them, and two
schedulers cannot warn twice. Expiring the lots themselves is ``ledger.expire_due``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, String, cast, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.ledger import expire_due, open_lot
from loyalty.notices import claim, release, sent
from loyalty.program import Program
from storage.database import SessionFactory
from storage.models import LedgerEntry, Member

KIND = "expiry"


def _window(program: Program, now: datetime) -> tuple[datetime, datetime]:
    return now, now + timedelta(days=program.expiry.warn_days)


def _unwarned_lots(program: Program, now: datetime) -> list[ColumnElement[bool]]:
    start, end = _window(program, now)
    return [
        open_lot(),
        col(LedgerEntry.expires_at) > start,
        col(LedgerEntry.expires_at) <= end,
        ~sent(KIND, col(Member.telegram_id), cast(col(LedgerEntry.id), String)),
    ]


def due(program: Program, now: datetime, limit: int = 500) -> Select[Member] | None:
    """Members with points expiring within the warning window that they have not been warned about."""
    if not program.expiry.warn_days or program.expiry.policy == "never":
        return None
    # Driven from the open lots by expiry (their partial index), not from the members table.
    members = (
        select(col(LedgerEntry.member_id))
        .join(Member, col(Member.id) == col(LedgerEntry.member_id))
        .where(*_unwarned_lots(program, now), col(Member.blocked_at).is_(None), col(Member.erased_at).is_(None))
        .distinct()
        .limit(limit)
    )
    return select(Member).where(col(Member.id).in_(members))


@dataclass(frozen=True)
class Warning:
    points: int
    first: datetime  # the earliest expiry among them
    lots: tuple[int, ...]


async def claim_warning(session: AsyncSession, program: Program, member: Member, now: datetime) -> Warning | None:
    """Claim the member's unwarned expiring lots; None if another scheduler claimed them first."""
    rows = (
        await session.execute(
            select(col(LedgerEntry.id), col(LedgerEntry.remaining), col(LedgerEntry.expires_at))
            .join(Member, col(Member.id) == col(LedgerEntry.member_id))
            .where(col(LedgerEntry.member_id) == member.id, *_unwarned_lots(program, now))
            .order_by(col(LedgerEntry.expires_at))
        )
    ).all()
    if not rows:
        return None
    lots = tuple(int(lot_id or 0) for lot_id, _, _ in rows)
    if not await claim(session, KIND, member.telegram_id, str(lots[0]), now):
        return None
    for lot_id in lots[1:]:
        await claim(session, KIND, member.telegram_id, str(lot_id), now)
    first = rows[0][2]
    assert first is not None  # the window selects lots that expire
    return Warning(sum(int(remaining) for _, remaining, _ in rows), first, lots)


async def unclaim(session: AsyncSession, member: Member, warning: Warning) -> None:
    """The message did not go out: let the next run try again."""
    for lot_id in warning.lots:
        await release(session, KIND, member.telegram_id, str(lot_id))


async def expire_points(sessions: SessionFactory, now: datetime) -> int:
    """The scheduler's hourly sweep: what remains of every lot past its expiry is taken back (nothing is sent)."""
    async with sessions() as session:
        return await expire_due(session, now)
