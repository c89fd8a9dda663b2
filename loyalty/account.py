"""What a member sees of their own account: balance, expiring points, history; and staff adjustments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, Select, bindparam, func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from sqlmodel.sql.sqltypes import UTCDateTime

from loyalty.ledger import Kind, credit, debit, expire_member, find_by_key
from loyalty.program import Program
from storage.database import begin_write
from storage.models import AuditLog, LedgerEntry, Member

HISTORY_PAGE_SIZE = 10


@dataclass(frozen=True)
class Balance:
    points: int
    lifetime_points: int
    expiring_points: int
    expiring_first: datetime | None
    """Earliest expiry (UTC) among the points that expire within the horizon."""
    next_points: int = 0
    """Points that expire on the local day of ``expiring_first``."""


def _balance_statement() -> Select[int, int, int, int, datetime | None]:
    # Built once: /balance is the hottest read, and building the expression cost more than running it.
    expires_at, remaining = col(LedgerEntry.expires_at), col(LedgerEntry.remaining)
    now, horizon = bindparam("now", type_=UTCDateTime), bindparam("horizon", type_=UTCDateTime)
    member_id = bindparam("member_id", type_=Integer)
    open_lots = (col(LedgerEntry.member_id) == member_id) & (remaining > 0)
    # An aggregate without GROUP BY yields exactly one row, so the cross join keeps the member's row.
    lots = (
        select(
            func.coalesce(func.sum(remaining).filter(expires_at <= now), 0).label("due"),  # type: ignore[operator]
            func.coalesce(func.sum(remaining).filter(expires_at > now), 0).label("expiring"),  # type: ignore[operator]
            func.min(expires_at).filter(expires_at > now).label("first"),  # type: ignore[operator]
        )
        .where(open_lots, expires_at <= horizon)  # type: ignore[operator]
        .subquery()
    )
    return (
        select(col(Member.points), col(Member.lifetime_points), lots.c.due, lots.c.expiring, lots.c.first)
        .join_from(Member, lots, true())
        .where(col(Member.id) == member_id)
    )


_BALANCE = _balance_statement()


async def balance(
    session: AsyncSession, member_id: int, now: datetime, horizon_days: int = 30, tz: ZoneInfo | None = None
) -> Balance:
    """The member's points now, sweeping first any lot that expired since the expiry job last ran."""
    params = {"member_id": member_id, "now": now, "horizon": now + timedelta(days=horizon_days)}
    # Core execution on the session's connection: no ORM entities here, so skip the ORM's machinery.
    points, lifetime, due, expiring, first = (await (await session.connection()).execute(_BALANCE, params)).one()
    if due:
        await begin_write(session)
        await expire_member(session, member_id, now)
        await session.commit()
        points, lifetime, due, expiring, first = (await (await session.connection()).execute(_BALANCE, params)).one()
    next_points = 0
    if first is not None:
        local = first.astimezone(tz or UTC)
        day_end = (local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).astimezone(UTC)
        next_points = int((await session.execute(
            select(func.coalesce(func.sum(col(LedgerEntry.remaining)), 0)).where(
                col(LedgerEntry.member_id) == member_id, col(LedgerEntry.remaining) > 0,
                col(LedgerEntry.expires_at) > now, col(LedgerEntry.expires_at) < day_end)
        )).scalar_one())
    return Balance(int(points), int(lifetime), int(expiring), first, next_points)


@dataclass(frozen=True)
class HistoryPage:
    entries: list[LedgerEntry]
    page: int
    pages: int


async def history(session: AsyncSession, member_id: int, page: int, size: int = HISTORY_PAGE_SIZE) -> HistoryPage:
    """One page of the member's ledger, newest first; an out-of-range page is clamped."""
    total = (
        await session.execute(select(func.count()).where(col(LedgerEntry.member_id) == member_id))
    ).scalar_one()
    pages = max(1, -(-int(total) // size))
    page = min(max(page, 0), pages - 1)
    result = await session.execute(
        select(LedgerEntry)
        .where(col(LedgerEntry.member_id) == member_id)
        .order_by(col(LedgerEntry.created_at).desc(), col(LedgerEntry.id).desc())
        .offset(page * size)
        .limit(size)
    )
    return HistoryPage(list(result.scalars()), page, pages)


@dataclass(frozen=True)
class Adjustment:
    entry: LedgerEntry
    balance: int
    created: bool


async def adjust(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    delta: int,
    reason: str,
    actor_id: int,
    key: str,
    now: datetime,
) -> Adjustment:
    """A staff correction, audited. A deduction beyond the balance raises InsufficientPoints."""
    if delta == 0:
        raise ValueError("an adjustment must change the balance")
    await begin_write(session)
    if (done := await find_by_key(session, key)) is not None:
        member = await session.get(Member, done.member_id)
        assert member is not None
        return Adjustment(done, member.points, created=False)
    try:
        if delta > 0:
            entry, new_balance = await credit(
                session, member_id, delta, kind=Kind.ADJUST, now=now, expires_at=program.expires_at(now),
                key=key, reason=reason, actor_id=actor_id,
            )
        else:
            entry, new_balance = await debit(
                session, member_id, -delta, kind=Kind.ADJUST, now=now, key=key, reason=reason, actor_id=actor_id,
            )
        session.add(AuditLog(actor_id=actor_id, action="adjust", member_id=member_id, points=delta,
                             detail=reason, created_at=now))
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return await adjust(session, program, member_id=member_id, delta=delta, reason=reason,
                            actor_id=actor_id, key=key, now=now)
    except Exception:
        await session.rollback()
        raise
    return Adjustment(entry, new_balance, created=True)
