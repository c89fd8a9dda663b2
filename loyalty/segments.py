"""Member segments for broadcasts: filters combined with AND, over members who take promotions.

Members who turned promotions off, blocked the bot or erased their data are never in any segment. Admins
write a segment as words, e.g. ``tier=Gold inactive=30 lang=zh-Hans``; ``all`` is everyone who takes promotions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, func, select
from sqlmodel import col

from loyalty.members import LANGUAGES
from loyalty.numbers import is_whole
from loyalty.program import Program
from storage.models import Member, Purchase, Survey

NPS_RANGES = {"promoter": (9, 10), "passive": (7, 8), "detractor": (0, 6)}


class Segment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: str | None = None
    inactive_days: int | None = Field(default=None, gt=0, le=3650)
    active_days: int | None = Field(default=None, gt=0, le=3650)
    birthday_this_month: bool = False
    language: str | None = None
    nps: Literal["promoter", "passive", "detractor"] | None = None
    min_points: int | None = Field(default=None, ge=0)


class SegmentProblem(StrEnum):
    UNKNOWN_FILTER = "unknown_filter"
    BAD_VALUE = "bad_value"


class BadSegment(ValueError):
    def __init__(self, problem: SegmentProblem, word: str) -> None:
        super().__init__(f"{problem.value}: {word}")
        self.problem, self.word = problem, word


FILTERS = ("tier", "inactive", "active", "birthday", "lang", "nps", "points")
"""The filters' names, as admins write them in the chat and as the console's form sends them."""


def parse_segment(text: str, program: Program) -> Segment:
    """``all`` or filters: tier=NAME inactive=DAYS active=DAYS birthday lang=CODE nps=KIND points=MIN."""
    pairs = []
    for word in text.split():
        key, _, value = word.partition("=")
        if key.lower() == "all" and not value:
            continue
        pairs.append((key, value, word))
    return segment_of(pairs, program)


def segment_of(filters: Iterable[tuple[str, str, str]], program: Program) -> Segment:
    """A segment from (filter, value, what the admin wrote) triples, the chat's words or the console's form;
    ``birthday`` takes no value. BadSegment names what was wrong."""
    values: dict[str, object] = {}
    words = []
    for key, value, word in filters:
        key = key.lower()
        words.append(word)
        if key == "birthday" and not value:
            values["birthday_this_month"] = True
        elif key == "tier" and program.tiers.level(value) is not None:
            values["tier"] = value
        elif key in ("inactive", "active", "points") and is_whole(value) and 0 < len(value) <= 7:
            values[{"inactive": "inactive_days", "active": "active_days", "points": "min_points"}[key]] = int(value)
        elif key in ("lang", "language") and value in LANGUAGES:
            values["language"] = value
        elif key == "nps" and value in NPS_RANGES:
            values["nps"] = value
        elif key in ("tier", "inactive", "active", "points", "lang", "language", "nps"):
            raise BadSegment(SegmentProblem.BAD_VALUE, word)
        else:
            raise BadSegment(SegmentProblem.UNKNOWN_FILTER, word)
    try:
        return Segment.model_validate(values)
    except ValueError as exc:
        raise BadSegment(SegmentProblem.BAD_VALUE, " ".join(words)) from exc


def members(segment: Segment, program: Program, now: datetime) -> Select[int | None, str]:
    """Ids and languages of the segment's members."""
    last_purchase = (
        select(func.max(col(Purchase.created_at)))
        .where(col(Purchase.member_id) == col(Member.id))
        .correlate(Member)
        .scalar_subquery()
    )
    last_activity = func.coalesce(last_purchase, col(Member.joined_at))
    statement = select(col(Member.id), col(Member.language)).where(
        col(Member.promotions).is_(True), col(Member.blocked_at).is_(None), col(Member.erased_at).is_(None)
    )
    if segment.tier is not None:
        statement = statement.where(col(Member.tier) == segment.tier)
    if segment.inactive_days is not None:
        statement = statement.where(last_activity < now - timedelta(days=segment.inactive_days))
    if segment.active_days is not None:
        statement = statement.where(last_activity >= now - timedelta(days=segment.active_days))
    if segment.birthday_this_month:
        statement = statement.where(col(Member.birth_month) == now.astimezone(program.tz).month)
    if segment.language is not None:
        statement = statement.where(col(Member.language) == segment.language)
    if segment.nps is not None:
        latest = (
            select(col(Survey.score))
            .where(col(Survey.member_id) == col(Member.id), col(Survey.score).is_not(None))
            .order_by(col(Survey.scored_at).desc())
            .limit(1)
            .correlate(Member)
            .scalar_subquery()
        )
        low, high = NPS_RANGES[segment.nps]
        statement = statement.where(latest >= low, latest <= high)
    if segment.min_points is not None:
        statement = statement.where(col(Member.points) >= segment.min_points)
    return statement
