"""Program health figures computed from the database. Each function returns plain numbers for handlers to show."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.nps import Category, category
from storage.models import Survey


@dataclass(frozen=True)
class Nps:
    promoters: int
    passives: int
    detractors: int

    @property
    def answers(self) -> int:
        return self.promoters + self.passives + self.detractors

    @property
    def score(self) -> float | None:
        """% promoters − % detractors, from −100 to 100; None without answers."""
        if not self.answers:
            return None
        return 100 * (self.promoters - self.detractors) / self.answers


def nps_of(scores: Iterable[int]) -> Nps:
    counts = {kind: 0 for kind in Category}
    for value in scores:
        counts[category(value)] += 1
    return Nps(counts[Category.PROMOTER], counts[Category.PASSIVE], counts[Category.DETRACTOR])


async def nps(session: AsyncSession, since: datetime | None = None) -> Nps:
    statement = select(col(Survey.score)).where(col(Survey.score).is_not(None))
    if since is not None:
        statement = statement.where(col(Survey.scored_at) >= since)
    return nps_of(value for value in (await session.execute(statement)).scalars() if value is not None)
