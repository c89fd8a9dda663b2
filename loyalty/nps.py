"""NPS surveys: who is due one, and recording the answer exactly once.

A survey is due some hours after a purchase (``[nps]`` in the program file), for members the bot may message,
at most once per member per ``min_days_between``; UNIQUE(purchase) makes a survey for a purchase exist once,
so a scheduler run twice sends nothing twice. A score can change until the reason is given or skipped; after
that the answer is final and taps change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.program import Program
from storage.database import begin_write
from storage.models import Member, Purchase, Survey

REASON_MAX = 1000


class Category(StrEnum):
    PROMOTER = "promoter"
    PASSIVE = "passive"
    DETRACTOR = "detractor"


def category(score: int) -> Category:
    if score >= 9:
        return Category.PROMOTER
    return Category.PASSIVE if score >= 7 else Category.DETRACTOR


def due_statement(program: Program, now: datetime, limit: int = 500) -> Select[Purchase, Member]:
    """Purchases old enough for a survey, newest first, of members who may be asked now."""
    rules = program.nps
    ready = now - timedelta(hours=rules.delay_hours)
    # NOT EXISTS lookups on survey's indexes, rather than NOT IN lists of every recent survey.
    asked_lately = exists(
        select(col(Survey.id)).where(
            col(Survey.member_id) == col(Purchase.member_id),
            col(Survey.sent_at) > now - timedelta(days=rules.min_days_between),
        )
    )
    surveyed = exists(select(col(Survey.id)).where(col(Survey.purchase_id) == col(Purchase.id)))
    return (
        select(Purchase, Member)
        .join(Member, col(Member.id) == col(Purchase.member_id))
        .where(
            col(Purchase.created_at) <= ready,
            col(Purchase.created_at) > ready - timedelta(hours=rules.window_hours),
            col(Purchase.refunded_minor) < col(Purchase.amount_minor),
            col(Member.blocked_at).is_(None),
            col(Member.erased_at).is_(None),
            ~asked_lately,
            ~surveyed,
        )
        .order_by(col(Purchase.created_at).desc())
        .limit(limit)
    )


async def due(session: AsyncSession, program: Program, now: datetime) -> list[tuple[Purchase, Member]]:
    """Purchases that should bring a survey now: one per member, their latest."""
    if not program.nps.enabled:
        return []
    latest: dict[int, tuple[Purchase, Member]] = {}
    for purchase, member in (await session.execute(due_statement(program, now))).all():
        latest.setdefault(purchase.member_id, (purchase, member))
    return list(latest.values())


async def create(session: AsyncSession, member_id: int, purchase_id: int | None, now: datetime) -> Survey | None:
    """The survey row, made before sending; None if this purchase has one already (a second scheduler run)."""
    await begin_write(session)
    survey = Survey(member_id=member_id, purchase_id=purchase_id, sent_at=now)
    session.add(survey)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return None
    return survey


async def forget(session: AsyncSession, survey_id: int) -> None:
    """A survey that could not be sent: remove it so the next run asks again."""
    await begin_write(session)
    await session.execute(delete(Survey).where(col(Survey.id) == survey_id, col(Survey.score).is_(None)))
    await session.commit()


@dataclass(frozen=True)
class Answer:
    survey: Survey
    changed: bool  # False: the same score again, or the answer was already final


async def score(session: AsyncSession, survey_id: int, member_id: int, value: int, now: datetime) -> Answer | None:
    """Record (or change, until the answer is final) a 0–10 score. None if it is not this member's survey."""
    if not 0 <= value <= 10:
        raise ValueError("a score is 0 to 10")
    return await _change(
        session,
        survey_id,
        member_id,
        (col(Survey.score).is_(None)) | (col(Survey.score) != value),
        score=value,
        scored_at=now,
    )


async def finish(
    session: AsyncSession, survey_id: int, member_id: int, reason: str | None, now: datetime
) -> Answer | None:
    """Give (or skip, with None) the reason: the answer becomes final. None if not this member's survey."""
    return await _change(
        session,
        survey_id,
        member_id,
        col(Survey.score).is_not(None),
        reason=reason.strip()[:REASON_MAX] if reason else None,
        finished_at=now,
    )


async def _change(
    session: AsyncSession, survey_id: int, member_id: int, condition: Any, **values: Any
) -> Answer | None:
    """Update this member's unfinished survey when ``condition`` holds; the survey as it now stands."""
    await begin_write(session)
    changed = (
        await session.execute(
            update(Survey)
            .where(
                col(Survey.id) == survey_id,
                col(Survey.member_id) == member_id,
                col(Survey.finished_at).is_(None),
                condition,
            )
            .values(**values)
        )
    ).rowcount  # type: ignore[attr-defined]
    await session.commit()
    survey = await session.get(Survey, survey_id, populate_existing=True)
    if survey is None or survey.member_id != member_id:
        return None
    return Answer(survey, bool(changed))


async def last_score(session: AsyncSession, member_id: int) -> int | None:
    return (
        await session.execute(
            select(col(Survey.score))
            .where(col(Survey.member_id) == member_id, col(Survey.score).is_not(None))
            .order_by(col(Survey.scored_at).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
