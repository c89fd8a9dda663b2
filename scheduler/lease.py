"""The scheduler lease: one row naming the instance allowed to run jobs, until when.

The holder renews it on every tick; another instance takes it only once it has expired or been given back, so a
crashed scheduler is replaced within one lease period, a stopped one at once, and two live ones never run jobs
at the same time. (Every send is also
guarded by a UNIQUE notice, so even a lease lost mid-job cannot send twice.)
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.database import begin_write, insert_once
from storage.models import SchedulerLease

NAME = "scheduler"


async def hold(session: AsyncSession, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease for ``holder``; False while another live instance holds it."""
    await begin_write(session)
    renewed = (
        await session.execute(
            update(SchedulerLease)
            .where(
                col(SchedulerLease.name) == NAME,
                or_(col(SchedulerLease.holder) == holder, col(SchedulerLease.expires_at) <= now),
            )
            .values(holder=holder, expires_at=now + ttl)
        )
    ).rowcount  # type: ignore[attr-defined]
    if not renewed:
        renewed = await insert_once(session, SchedulerLease, name=NAME, holder=holder, expires_at=now + ttl)
    await session.commit()
    return bool(renewed)


async def give_back(session: AsyncSession, holder: str, now: datetime) -> None:
    """A graceful stop: the lease ends now, so the next scheduler need not wait for it to expire."""
    await begin_write(session)
    await session.execute(
        update(SchedulerLease)
        .where(col(SchedulerLease.name) == NAME, col(SchedulerLease.holder) == holder)
        .values(expires_at=now)
    )
    await session.commit()
