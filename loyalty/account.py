"""What a member sees of their own account: balance, expiring points, history; and staff adjustments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, bindparam, func, select
from sqlalchemy.exc import IntegrityError, NoResultFound
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from sqlmodel.sql.sqltypes import UTCDateTime

from loyalty.audit import refuse_own_account
from loyalty.ledger import Kind, credit, debit, expire_member, find_by_key, open_lot
from loyalty.members import Column
from loyalty.pending import NOTHING_PENDING, Pending, pending_of
from loyalty.program import Program
from loyalty.punchcards import CardProgress, stamps_column
from loyalty.tiers import TierProgress, counts_pending, progress_from, to_amount, window_columns, window_start
from storage.database import PreparedRead, begin_write
from storage.models import AuditLog, Campaign, LedgerEntry, Member, Purchase

HISTORY_PAGE_SIZE = 10
# /balance tells the points that expire within this many days.
EXPIRY_HORIZON_DAYS = 30
MAX_ADJUSTMENT = 1_000_000
"""The most points one staff adjustment may add or take, by /adjust or the API."""


@dataclass(frozen=True)
class Balance:
    points: int
    lifetime_points: int
    expiring_points: int
    expiring_first: datetime | None
    """Earliest expiry (UTC) among the points that expire within the horizon."""
    next_points: int = 0
    """Points that expire on the local day of ``expiring_first``."""
    pending: Pending = NOTHING_PENDING
    """Points of purchases still inside the return window (``loyalty.pending``)."""


def _lots_columns() -> tuple[Column, ...]:
    # Built once: /balance is the hottest read, and building the expression cost more than running it.
    expires_at, remaining = col(LedgerEntry.expires_at), col(LedgerEntry.remaining)
    now, horizon = bindparam("now", type_=UTCDateTime), bindparam("horizon", type_=UTCDateTime)
    # Scalar subqueries correlated with the member row: one statement reads the row and its lots.
    lots = (col(LedgerEntry.member_id) == col(Member.id), open_lot())
    return (
        col(Member.points),
        col(Member.lifetime_points),
        select(func.coalesce(func.sum(remaining), 0))
        .where(*lots, expires_at <= now)
        .correlate(Member)
        .scalar_subquery()
        .label("due"),
        select(func.coalesce(func.sum(remaining), 0))
        .where(*lots, expires_at > now, expires_at <= horizon)
        .correlate(Member)
        .scalar_subquery()
        .label("expiring"),
        select(func.min(expires_at))
        .where(*lots, expires_at > now, expires_at <= horizon)
        .correlate(Member)
        .scalar_subquery()
        .label("first"),
        col(Member.pending_points),
    )


_LOTS = _lots_columns()


@dataclass(frozen=True)
class Summary:
    balance: Balance
    tier: TierProgress | None
    cards: list[CardProgress]


@lru_cache(maxsize=16)
def _summary_columns(tier_basis: str | None, card_keys: tuple[str, ...], count_pending: bool) -> tuple[Column, ...]:
    # Everything /balance shows, as columns of the member's row; their shape depends only on the program.
    extra = list(window_columns(tier_basis, col(Member.id), count_pending)) if tier_basis else []
    extra += [stamps_column(key, col(Member.id)) for key in card_keys]
    return (*_LOTS, *extra)


@lru_cache(maxsize=16)
def _summary_statement(columns: tuple[Column, ...]) -> PreparedRead:
    return PreparedRead(select(*columns).where(col(Member.id) == bindparam("member_id", type_=Integer)))


def _columns(program: Program) -> tuple[Column, ...]:
    basis = program.tiers.basis if program.tiers.levels else None
    return _summary_columns(basis, tuple(card.key for card in program.punch_cards), counts_pending(program))


def _params(program: Program, now: datetime, horizon_days: int) -> dict[str, Any]:
    return {"now": now, "horizon": now + timedelta(days=horizon_days), "since": window_start(program, now)}


async def summary(
    session: AsyncSession,
    program: Program,
    member_id: int,
    tier: str | None,
    now: datetime,
    horizon_days: int = EXPIRY_HORIZON_DAYS,
) -> Summary:
    """Balance, tier progress and punch cards together, as /balance shows them, in one statement."""

    async def read() -> Sequence[Any] | None:
        params = {**_params(program, now, horizon_days), "member_id": member_id}
        return await _summary_statement(_columns(program)).first(session, params)

    row = await read()
    if row is not None and row[2]:  # points past their expiry that the job has not swept yet
        await begin_write(session)
        await expire_member(session, member_id, now)
        await session.commit()
        row = await read()
    if row is None:
        raise NoResultFound(f"no member {member_id}")
    points, lifetime, _due, expiring, first, pending, *rest = row
    tier_progress = None
    if program.tiers.levels:
        total, oldest, *rest = rest
        tier_progress = progress_from(program, tier, to_amount(program, total), oldest)
    cards = [CardProgress(rule, int(stamps or 0)) for rule, stamps in zip(program.punch_cards, rest, strict=True)]
    next_points = await _next_expiring(session, member_id, now, first, program.tz) if first is not None else 0
    held = await pending_of(session, member_id, program.tz) if pending else NOTHING_PENDING
    balance = Balance(int(points), int(lifetime), int(expiring), first, next_points, held)
    return Summary(balance, tier_progress, cards)


async def _next_expiring(session: AsyncSession, member_id: int, now: datetime, first: datetime, tz: ZoneInfo) -> int:
    """Points that expire on the local day of the next expiry."""
    local = first.astimezone(tz)
    day_end = (local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)).astimezone(UTC)
    return int(
        (
            await session.execute(
                select(func.coalesce(func.sum(col(LedgerEntry.remaining)), 0)).where(
                    col(LedgerEntry.member_id) == member_id,
                    open_lot(),
                    col(LedgerEntry.expires_at) > now,
                    col(LedgerEntry.expires_at) < day_end,
                )
            )
        ).scalar_one()
    )


class PurchasePromotion(NamedTuple):
    """The promotion a purchase earned with: its name as recorded (the key into the program), how it applied
    ("×2") and, when it was a campaign started in chat, that campaign (whose name members read in their language)."""

    name: str
    detail: str
    campaign: Campaign | None = None


@dataclass(frozen=True)
class HistoryPage:
    entries: list[LedgerEntry]
    page: int
    pages: int
    # The promotion a purchase on this page earned with, by purchase id
    promotions: dict[int, PurchasePromotion] = field(default_factory=dict)


async def history(session: AsyncSession, member_id: int, page: int, size: int = HISTORY_PAGE_SIZE) -> HistoryPage:
    """One page of the member's ledger, newest first; an out-of-range page is clamped."""
    total = (await session.execute(select(func.count()).where(col(LedgerEntry.member_id) == member_id))).scalar_one()
    pages = max(1, -(-int(total) // size))
    page = min(max(page, 0), pages - 1)
    result = await session.execute(
        select(LedgerEntry)
        .where(col(LedgerEntry.member_id) == member_id)
        .order_by(col(LedgerEntry.created_at).desc(), col(LedgerEntry.id).desc())
        .offset(page * size)
        .limit(size)
    )
    entries = list(result.scalars())
    purchase_ids = [entry.purchase_id for entry in entries if entry.kind == Kind.PURCHASE and entry.purchase_id]
    promotions: dict[int, PurchasePromotion] = {}
    if purchase_ids:
        rows = await session.execute(
            select(col(Purchase.id), col(Purchase.promotion), col(Purchase.promotion_detail), Campaign)
            .outerjoin(Campaign, col(Campaign.id) == col(Purchase.campaign_id))
            .where(col(Purchase.id).in_(purchase_ids), col(Purchase.promotion).is_not(None))
        )
        promotions = {
            purchase_id: PurchasePromotion(name, detail or "", campaign)
            for purchase_id, name, detail, campaign in rows
            if purchase_id and name
        }
    return HistoryPage(entries, page, pages, promotions)


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
    target = await session.get(Member, member_id)
    if target is None:
        raise LookupError(member_id)
    await refuse_own_account(
        session, actor_id=actor_id, member=target, action="adjust", detail=f"{delta:+d} {reason}", now=now
    )
    try:
        if delta > 0:
            entry, new_balance = await credit(
                session,
                member_id,
                delta,
                kind=Kind.ADJUST,
                now=now,
                expires_at=program.expires_at(now),
                key=key,
                reason=reason,
                actor_id=actor_id,
            )
        else:
            entry, new_balance = await debit(
                session,
                member_id,
                -delta,
                kind=Kind.ADJUST,
                now=now,
                key=key,
                reason=reason,
                actor_id=actor_id,
            )
        session.add(
            AuditLog(
                actor_id=actor_id, action="adjust", member_id=member_id, points=delta, detail=reason, created_at=now
            )
        )
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return await adjust(
            session, program, member_id=member_id, delta=delta, reason=reason, actor_id=actor_id, key=key, now=now
        )
    except Exception:
        await session.rollback()
        raise
    return Adjustment(entry, new_balance, created=True)
