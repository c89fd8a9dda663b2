"""The weekly digest for the owner and admins: how the program did in the last seven days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.feedback import Status
from loyalty.ledger import Kind
from loyalty.metrics import Nps, nps
from loyalty.program import WEEKDAYS, Program
from storage.models import LedgerEntry, Member, Purchase, Thread

KIND = "digest"


def due_week(program: Program, now: datetime) -> tuple[str, datetime] | None:
    """This week's digest once its local weekday and hour have come: its name (ISO week) and the week's start."""
    rules = program.digest
    if not rules.enabled:
        return None
    local = now.astimezone(program.tz)
    monday = (local - timedelta(days=local.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    moment = monday + timedelta(days=WEEKDAYS.index(rules.weekday), hours=rules.hour)
    if local < moment:
        return None
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}", moment


@dataclass(frozen=True)
class Digest:
    since: datetime
    until: datetime
    new_members: int
    purchases: int
    sales_minor: int
    points_earned: int
    points_redeemed: int
    nps: Nps
    open_threads: int


async def summary(session: AsyncSession, until: datetime, days: int = 7) -> Digest:
    since = until - timedelta(days=days)
    new_members = (
        await session.execute(
            select(func.count())
            .select_from(Member)
            .where(col(Member.joined_at) > since, col(Member.joined_at) <= until)
        )
    ).scalar_one()
    purchases, sales = (
        await session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(col(Purchase.amount_minor) - col(Purchase.refunded_minor)), 0),
            ).where(col(Purchase.created_at) > since, col(Purchase.created_at) <= until)
        )
    ).one()
    in_week = (col(LedgerEntry.created_at) > since) & (col(LedgerEntry.created_at) <= until)
    earned, redeemed = (
        await session.execute(
            select(
                func.coalesce(func.sum(col(LedgerEntry.points)).filter(col(LedgerEntry.points) > 0), 0),
                func.coalesce(func.sum(col(LedgerEntry.points)).filter(col(LedgerEntry.kind) == Kind.SPEND), 0),
            ).where(in_week)
        )
    ).one()
    open_threads = (
        await session.execute(select(func.count()).select_from(Thread).where(col(Thread.status) == Status.OPEN))
    ).scalar_one()
    return Digest(
        since,
        until,
        int(new_members),
        int(purchases),
        int(sales),
        int(earned),
        -int(redeemed),
        await nps(session, since),
        int(open_threads),
    )
