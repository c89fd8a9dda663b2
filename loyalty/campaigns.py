"""Time-limited campaigns that admins start from chat; ``loyalty.earning`` evaluates them with the file's rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.program import Program, localized
from storage.database import begin_write
from storage.models import Campaign

MAX_DAYS = 366
MAX_NAME = 48
# A campaign's name in each language members read (/campaign name): the column that holds it.
NAME_COLUMNS = {"en": "name", "zh-hans": "name_zh_hans", "zh-hant": "name_zh_hant"}
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
        name=name[:MAX_NAME],
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


def name_in(campaign: Campaign, language: str) -> str:
    """The campaign's name in ``language`` ("zh-Hans", "zh-Hant"), else the name it was started with."""
    return localized(language, campaign.name, campaign.name_zh_hans, campaign.name_zh_hant)


def promotion_name(program: Program, name: str, campaign: Campaign | None, language: str) -> str:
    """The promotion a purchase earned with (recorded by its name) as a member reads it: the campaign's name in
    their language when a campaign started in chat applied, else the program file's translation."""
    return name_in(campaign, language) if campaign is not None else program.promotion_name(name, language)


class NameProblem(StrEnum):
    NO_CAMPAIGN = "no_campaign"
    LANGUAGE = "language"  # not one of NAME_COLUMNS
    EMPTY = "empty"
    TOO_LONG = "too_long"  # over MAX_NAME characters


class NameRefused(ValueError):
    """Why /campaign name changed nothing."""

    def __init__(self, problem: NameProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


async def set_name(session: AsyncSession, campaign_id: int, language: str, name: str) -> str:
    """Give a campaign (running or over: its purchases keep naming it) its name in one language of
    ``NAME_COLUMNS``, its spaces collapsed, and return it as stored; raises NameRefused, changing nothing, for an
    unknown campaign or language, or an empty or too long name."""
    column = NAME_COLUMNS.get(language.lower())
    if column is None:
        raise NameRefused(NameProblem.LANGUAGE)
    name = " ".join(name.split())
    if not name:
        raise NameRefused(NameProblem.EMPTY)
    if len(name) > MAX_NAME:
        raise NameRefused(NameProblem.TOO_LONG)
    await begin_write(session)
    campaign = await session.get(Campaign, campaign_id)
    if campaign is None:
        await session.rollback()
        raise NameRefused(NameProblem.NO_CAMPAIGN)
    setattr(campaign, column, name)
    await session.commit()
    return name
