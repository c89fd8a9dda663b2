"""Time-limited campaigns that admins start from chat; ``loyalty.earning`` evaluates them with the file's rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.database import begin_write
from storage.models import Campaign

MAX_DAYS = 366
_EFFECT = re.compile(r"^(?:[x×](?P<multiplier>\d{1,2}(?:\.\d{1,2})?)|\+(?P<bonus>\d{1,6}))$", re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class Effect:
    multiplier: Decimal | None
    bonus: int | None


def parse_effect(text: str) -> Effect | None:
    """ "x2", "×1.5" (a multiplier above 1) or "+50" (bonus points); None for anything else."""
    match = _EFFECT.match(text.strip())
    if match is None:
        return None
    if match.group("multiplier"):
        multiplier = Decimal(match.group("multiplier"))
        return Effect(multiplier, None) if 1 < multiplier <= 10 else None
    bonus = int(match.group("bonus"))
    return Effect(None, bonus) if bonus > 0 else None


async def start_campaign(
    session: AsyncSession,
    *,
    name: str,
    effect: Effect,
    days: int,
    category: str | None,
    actor_id: int,
    now: datetime,
) -> Campaign:
    if not 1 <= days <= MAX_DAYS:
        raise ValueError("days out of range")
    await begin_write(session)
    campaign = Campaign(
        name=name[:48],
        multiplier=str(effect.multiplier) if effect.multiplier else None,
        bonus=effect.bonus,
        category=category,
        starts_at=now,
        ends_at=now + timedelta(days=days),
        created_by=actor_id,
        created_at=now,
    )
    session.add(campaign)
    await session.commit()
    return campaign


async def running_campaigns(session: AsyncSession, now: datetime) -> list[Campaign]:
    result = await session.execute(
        select(Campaign).where(col(Campaign.ended_at).is_(None), col(Campaign.ends_at) > now).order_by(col(Campaign.id))
    )
    return list(result.scalars())


async def end_campaign(session: AsyncSession, campaign_id: int, now: datetime) -> bool:
    """End a running campaign now; False if there is no such running campaign."""
    await begin_write(session)
    ended = await session.execute(
        update(Campaign)
        .where(col(Campaign.id) == campaign_id, col(Campaign.ended_at).is_(None), col(Campaign.ends_at) > now)
        .values(ended_at=now, ends_at=now)
    )
    await session.commit()
    return bool(ended.rowcount)  # type: ignore[attr-defined]
