"""What the merchant console shows of one member: balance and lots, the latest ledger entries, purchases, coupons,
feedback threads, NPS answers and referrals. Reads only; every change the console makes goes through the function
the chat's command calls (``account.adjust``, ``profile.set_birthday``, ``staffing``, ``refunds.refund``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty import referrals, stores
from loyalty.account import HistoryPage, history
from loyalty.feedback import Status
from loyalty.roles import Role, StaticRoles, merge
from storage.models import Coupon, LedgerEntry, Member, Purchase, Reward, StaffRole, Survey, Thread

LATEST = 20


@dataclass(frozen=True)
class Threads:
    total: int
    open: int
    latest: Thread | None

    @property
    def latest_open(self) -> bool:
        return self.latest is not None and self.latest.status != Status.CLOSED


@dataclass(frozen=True)
class MemberFile:
    member: Member
    role: Role  # the one that counts, settings and database together
    granted: Role | None  # given in the database (by an invitation or the console): /staff remove takes it back
    referred_by: str | None  # the referrer's member code
    lots: list[LedgerEntry]  # what is left of each earn lot, soonest expiry first
    ledger: HistoryPage  # the latest LATEST entries
    purchases: list[Purchase]  # the latest LATEST, newest first
    coupons: list[tuple[Coupon, Reward]]  # the latest LATEST, newest first, used or not
    threads: Threads
    nps: list[Survey]  # the latest LATEST answered surveys, newest first
    referrals: referrals.Stats
    usual_store: str | None = None  # the [[stores]] key they buy at most


async def member_file(session: AsyncSession, static: StaticRoles, member_id: int, now: datetime) -> MemberFile:
    member = await session.get(Member, member_id, populate_existing=True)
    if member is None or member.erased_at is not None:
        raise LookupError(member_id)
    referred_by = None
    if member.referred_by_id is not None:
        referred_by = (
            await session.execute(select(col(Member.code)).where(col(Member.id) == member.referred_by_id))
        ).scalar()
    lots = (
        await session.execute(
            select(LedgerEntry)
            .where(col(LedgerEntry.member_id) == member_id, col(LedgerEntry.remaining) > 0)
            .order_by(col(LedgerEntry.expires_at).is_(None), col(LedgerEntry.expires_at), col(LedgerEntry.id))
            .limit(LATEST)
        )
    ).scalars()
    purchases = (
        await session.execute(
            select(Purchase)
            .where(col(Purchase.member_id) == member_id)
            .order_by(col(Purchase.created_at).desc(), col(Purchase.id).desc())
            .limit(LATEST)
        )
    ).scalars()
    coupons = await session.execute(
        select(Coupon, Reward)
        .join(Reward, col(Reward.id) == col(Coupon.reward_id))
        .where(col(Coupon.member_id) == member_id)
        .order_by(col(Coupon.id).desc())
        .limit(LATEST)
    )
    total, still_open = (
        await session.execute(
            select(func.count(), func.count().filter(col(Thread.status) != Status.CLOSED)).where(
                col(Thread.member_id) == member_id
            )
        )
    ).one()
    latest_thread = (
        await session.execute(
            select(Thread).where(col(Thread.member_id) == member_id).order_by(col(Thread.id).desc()).limit(1)
        )
    ).scalar_one_or_none()
    nps = (
        await session.execute(
            select(Survey)
            .where(col(Survey.member_id) == member_id, col(Survey.score).is_not(None))
            .order_by(col(Survey.scored_at).desc(), col(Survey.id).desc())
            .limit(LATEST)
        )
    ).scalars()
    grant = await session.get(StaffRole, member.telegram_id)
    granted = Role(grant.role) if grant is not None else None
    return MemberFile(
        member=member,
        role=merge(static, member.telegram_id, granted),
        granted=granted,
        referred_by=referred_by,
        lots=list(lots),
        ledger=await history(session, member_id, 0, size=LATEST),
        purchases=list(purchases),
        coupons=[(coupon, reward) for coupon, reward in coupons],
        threads=Threads(int(total), int(still_open), latest_thread),
        nps=list(nps),
        referrals=await referrals.stats(session, member_id),
        usual_store=await stores.usual_store(session, member_id),
    )
