"""Program health figures, computed in SQL for a period (and as a trend); plain numbers for handlers, the
terminal report and charts to show. Periods are [start, end) in UTC; trends cut them at local midnights."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter
from sqlalchemy import Float, and_, case, cast, distinct, exists, func, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty import missions
from loyalty.holdouts import KINDS
from loyalty.ledger import Kind
from loyalty.lift import Group, Lift, lift
from loyalty.nps import Category, category
from loyalty.program import Program
from loyalty.tiers import months_after, months_before
from storage.database import SessionFactory, begin_write
from storage.models import (
    Checkin,
    Coupon,
    Delivery,
    HoldoutDraw,
    LedgerEntry,
    Member,
    Notice,
    Purchase,
    StatsSnapshot,
    Survey,
    Thread,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


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


# --------------------------------------------------------------------------- periods

# What a member did besides buying (a purchase counts by when it happened, from the purchases themselves).
ACTIVITY_KINDS = (Kind.SPEND, Kind.SHARE, Kind.PROFILE, Kind.REFERRAL, Kind.CHECKIN)
# Points given rather than earned by buying; adjustments by staff are a line of their own.
BONUS_KINDS = (
    Kind.WELCOME,
    Kind.REFERRAL,
    Kind.SHARE,
    Kind.PROFILE,
    Kind.BIRTHDAY,
    Kind.WINBACK,
    Kind.VIP,
    Kind.CHECKIN,
    Kind.MISSION,
)
CUSTOMER_WINDOW = timedelta(days=365)  # a customer: a member with a purchase in the last 12 months
LOYAL_PURCHASES = 4  # loyal: more than this many purchases in the last 12 months
PERIOD_RE = re.compile(r"^(?P<count>[1-9][0-9]{0,3})(?P<unit>[dm])$")


@dataclass(frozen=True)
class Period:
    """[start, end): the last ``count`` days or months up to ``end``."""

    label: str
    start: datetime
    end: datetime

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    @property
    def previous(self) -> Period:
        return Period(self.label, self.start - self.length, self.start)


def parse_period(text: str, now: datetime, tz: ZoneInfo) -> Period | None:
    """``7d``, ``30d``, ``90d``, ``12m`` (any count of days up to 3650 or months up to 120); None if not one."""
    found = PERIOD_RE.match(text.strip().lower())
    if found is None:
        return None
    count, unit = int(found["count"]), found["unit"]
    if (unit == "d" and count > 3650) or (unit == "m" and count > 120):
        return None
    if unit == "d":
        return Period(f"{count}d", now - timedelta(days=count), now)
    return Period(f"{count}m", months_before(now.astimezone(tz), count).astimezone(now.tzinfo), now)


def buckets(period: Period, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
    """The period cut into local days (up to 31 days), weeks (up to 26 weeks) or months, for trends."""
    local_end = period.end.astimezone(tz)
    days = period.length.days
    edges: list[datetime] = []
    if days <= 182:
        step = 1 if days <= 31 else 7
        edge = datetime.combine(local_end.date(), time(), tz) + timedelta(days=1)
        while edge > period.start:
            edges.append(edge)
            edge = datetime.combine((edge - timedelta(days=step)).date(), time(), tz)
        edges.append(edge)
    else:
        edge = datetime(local_end.year, local_end.month, 1, tzinfo=tz)
        edges.append(months_after(edge, 1))
        while edge > period.start:
            edges.append(edge)
            edge = months_after(edge, -1)
        edges.append(edge)
    edges.reverse()
    return [(max(a, period.start), min(b, period.end)) for a, b in pairwise(edges) if b > period.start]


def _bucket_index(column: Any, edges: list[tuple[datetime, datetime]]) -> Any:
    return case(*[(column < end, index) for index, (_start, end) in enumerate(edges)], else_=len(edges))


def _valid() -> Any:
    """Purchases that still count: not refunded in full."""
    return col(Purchase.refunded_minor) < col(Purchase.amount_minor)


def _between(column: Any, start: datetime, end: datetime) -> Any:
    return and_(column >= start, column < end)


def _member_at(end: datetime) -> Any:
    return and_(col(Member.joined_at) < end, or_(col(Member.erased_at).is_(None), col(Member.erased_at) >= end))


def _within(later: Any, earlier: Any, delta: timedelta, dialect: str) -> Any:
    """earlier <= later < earlier + delta, for two columns, on either database (SQLite has no intervals)."""
    if dialect == "sqlite":
        return and_(later >= earlier, func.julianday(later) < func.julianday(earlier) + delta.total_seconds() / 86400)
    return and_(later >= earlier, later < earlier + delta)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Members:
    """Members at the period's end (joined before it, not erased by then), and of those, the ones who joined in
    it and the ones who did something in it. Erased members count in none of the three."""

    total: int
    new: int
    active: int  # bought (a purchase not refunded in full, by when it happened), redeemed, shared or referred

    @property
    def engagement_rate(self) -> float | None:
        return _share(self.active, self.total)


def _gone_by(end: datetime) -> Any:
    """Members erased before ``end``: few, so the figures count everyone, then take them off by index lookups."""
    return and_(col(Member.erased_at).is_not(None), col(Member.erased_at) < end)


async def members(session: AsyncSession, period: Period) -> Members:
    start, end = period.start, period.end
    bought: Any = select(col(Purchase.member_id).label("member_id")).where(
        _between(col(Purchase.occurred_at), start, end), _valid()
    )
    did: Any = select(col(LedgerEntry.member_id).label("member_id")).where(
        _between(col(LedgerEntry.created_at), start, end), col(LedgerEntry.kind).in_(ACTIVITY_KINDS)
    )
    total, new = (
        await session.execute(
            select(func.count(), func.count().filter(col(Member.joined_at) >= start))
            .select_from(Member)
            .where(_member_at(end))
        )
    ).one()
    anyone = (await session.execute(select(func.count()).select_from(bought.union(did).subquery()))).scalar_one()
    # An erased member's activity before they left: counted above, taken off here.
    gone = (
        await session.execute(
            select(func.count())
            .select_from(Member)
            .where(
                _gone_by(end),
                or_(
                    exists(bought.where(col(Purchase.member_id) == col(Member.id))),
                    exists(did.where(col(LedgerEntry.member_id) == col(Member.id))),
                ),
            )
        )
    ).scalar_one()
    return Members(int(total), int(new), int(anyone) - int(gone))


@dataclass(frozen=True)
class Customers:
    """Purchase behaviour, by when purchases happened; a purchase refunded in full counts nowhere. A customer at a
    moment: a member with a purchase in the 12 months before it."""

    at_start: int
    at_end: int
    new: int  # customers at the end who were not customers at the start (first-timers and returning ones)
    buyers: int  # members with a purchase in the period
    repeat_buyers: int  # ... with two or more
    customers: int  # members still members at the end (not erased) with a purchase in the 12 months before it
    repeat_customers: int  # ... with more than one
    loyal: int  # ... with more than four
    previous_buyers: int  # members with a purchase in the previous period
    churned: int  # ... and none in this one

    @property
    def retention_rate(self) -> float | None:
        """(customers at end − new customers) / customers at start, as merchants learn it. Customers are the
        12-month ones whatever the period, so over a short period it reads high beside churn."""
        return _share(self.at_end - self.new, self.at_start)

    @property
    def repeat_rate(self) -> float | None:
        """Customers who bought more than once in the 12 months to the period's end, of those who bought."""
        return _share(self.repeat_customers, self.customers)

    @property
    def period_repeat_rate(self) -> float | None:
        """Buyers in the period who bought more than once in it."""
        return _share(self.repeat_buyers, self.buyers)

    @property
    def loyal_rate(self) -> float | None:
        """Customers who bought more than four times in the 12 months to the period's end, of those who bought."""
        return _share(self.loyal, self.customers)

    @property
    def churn_rate(self) -> float | None:
        return _share(self.churned, self.previous_buyers)


async def customers(session: AsyncSession, period: Period) -> Customers:
    """One pass over the purchases of the window every figure needs, one row per member, then sums; the 12-month
    customer figures then leave out members erased by the end (a second, small pass over theirs)."""
    start, end, previous = period.start, period.end, period.previous.start
    earliest = min(start - CUSTOMER_WINDOW, previous)
    at = col(Purchase.occurred_at)

    def flag(condition: Any) -> Any:
        return func.max(case((condition, 1), else_=0))

    def per_member(*where: Any) -> Any:
        return (
            select(
                flag(_between(at, start - CUSTOMER_WINDOW, start)).label("at_start"),
                flag(_between(at, end - CUSTOMER_WINDOW, end)).label("at_end"),
                func.sum(case((_between(at, start, end), 1), else_=0)).label("in_period"),
                func.sum(case((_between(at, end - CUSTOMER_WINDOW, end), 1), else_=0)).label("last_year"),
                flag(_between(at, previous, start)).label("before"),
            )
            .where(_between(at, earliest, end), _valid(), *where)
            .group_by(col(Purchase.member_id))
            .subquery()
        )

    def last_year_counts(c: Any) -> list[Any]:
        return [
            func.count().filter(c.last_year >= 1),
            func.count().filter(c.last_year > 1),
            func.count().filter(c.last_year > LOYAL_PURCHASES),
        ]

    c = per_member().c
    row = (
        await session.execute(
            select(
                func.coalesce(func.sum(c.at_start), 0),
                func.coalesce(func.sum(c.at_end), 0),
                func.count().filter(c.at_end == 1, c.at_start == 0),
                func.count().filter(c.in_period >= 1),
                func.count().filter(c.in_period >= 2),
                *last_year_counts(c),
                func.count().filter(c.before == 1),
                func.count().filter(c.before == 1, c.in_period == 0),
            )
        )
    ).one()
    gone = per_member(col(Purchase.member_id).in_(select(col(Member.id)).where(_gone_by(end)))).c
    gone_counts = (await session.execute(select(*last_year_counts(gone)))).one()
    at_start, at_end, new, buyers, repeat, customers_, repeat_customers, loyal, before, churned = (int(v) for v in row)
    customers_, repeat_customers, loyal = (
        n - int(g) for n, g in zip((customers_, repeat_customers, loyal), gone_counts, strict=True)
    )
    return Customers(at_start, at_end, new, buyers, repeat, customers_, repeat_customers, loyal, before, churned)


def _latest_answers(*where: Any, bucket: Any = None) -> Any:
    """(score, bucket): each respondent's latest answer among the surveys ``where`` selects (in each ``bucket``,
    if given): a member answering three times is one voice, as NPS is counted."""
    bucket = bucket if bucket is not None else literal(0)
    order = func.row_number().over(
        partition_by=(col(Survey.member_id), bucket), order_by=(col(Survey.scored_at).desc(), col(Survey.id).desc())
    )
    answers = (
        select(col(Survey.score).label("score"), bucket.label("bucket"), order.label("n"))
        .where(col(Survey.score).is_not(None), *where)
        .subquery()
    )
    return select(answers.c.score, answers.c.bucket).where(answers.c.n == 1)


async def nps(session: AsyncSession, since: datetime | None = None, until: datetime | None = None) -> Nps:
    where = []
    if since is not None:
        where.append(col(Survey.scored_at) >= since)
    if until is not None:
        where.append(col(Survey.scored_at) < until)
    rows = (await session.execute(_latest_answers(*where))).all()
    return nps_of(int(score) for score, _ in rows if score is not None)


@dataclass(frozen=True)
class Support:
    ratings: int
    satisfied: int  # rated 4 or 5
    first_responses: list[timedelta]

    @property
    def csat(self) -> float | None:
        return _share(self.satisfied, self.ratings)

    @property
    def median_first_response(self) -> timedelta | None:
        if not self.first_responses:
            return None
        ordered, middle = sorted(self.first_responses), len(self.first_responses) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


async def support(session: AsyncSession, period: Period) -> Support:
    ratings, satisfied = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(col(Thread.rating) >= 4),
            ).where(col(Thread.rating).is_not(None), _between(col(Thread.rated_at), period.start, period.end))
        )
    ).one()
    rows = (
        await session.execute(
            select(col(Thread.opened_at), col(Thread.first_response_at)).where(
                col(Thread.first_response_at).is_not(None), _between(col(Thread.opened_at), period.start, period.end)
            )
        )
    ).all()
    waits = [answered - opened for opened, answered in rows if answered is not None]
    return Support(int(ratings), int(satisfied), waits)


@dataclass(frozen=True)
class Points:
    """Purchase points by when the purchase happened, net of its refunds; the rest by when it was booked."""

    purchases: int  # earned by purchases made in the period, less what their refunds took back
    bonuses: int  # welcome, referral, shared content, profile, birthday, win-back and VIP points
    adjusted: int  # staff adjustments, up and down
    redeemed: int
    expired: int
    outstanding: int  # the merchant's liability now

    @property
    def earned(self) -> int:
        return self.purchases + self.bonuses

    @property
    def redemption_rate(self) -> float | None:
        return _share(self.redeemed, self.earned)

    def outstanding_value(self, program: Program) -> Decimal:
        """The liability in money, at the program's ``analytics.point_value``."""
        return Decimal(self.outstanding) * program.analytics.point_value


async def points(session: AsyncSession, period: Period) -> Points:
    points_ = col(LedgerEntry.points)
    kind = col(LedgerEntry.kind)
    # What refunds took back is the purchase's points times the share refunded, rounded down as refunds do.
    taken_back = col(Purchase.points) * col(Purchase.refunded_minor) // col(Purchase.amount_minor)
    purchases = (
        await session.execute(
            select(func.coalesce(func.sum(col(Purchase.points) - taken_back), 0)).where(
                _between(col(Purchase.occurred_at), period.start, period.end), col(Purchase.amount_minor) > 0
            )
        )
    ).scalar_one()
    bonuses, adjusted, redeemed, expired = (
        await session.execute(
            select(
                func.coalesce(func.sum(points_).filter(kind.in_(BONUS_KINDS)), 0),
                func.coalesce(func.sum(points_).filter(kind == Kind.ADJUST), 0),
                func.coalesce(-func.sum(points_).filter(kind == Kind.SPEND), 0),
                func.coalesce(-func.sum(points_).filter(kind == Kind.EXPIRE), 0),
            ).where(_between(col(LedgerEntry.created_at), period.start, period.end))
        )
    ).one()
    outstanding = (
        await session.execute(select(func.coalesce(func.sum(col(Member.points)), 0)).where(col(Member.points) > 0))
    ).scalar_one()
    return Points(int(purchases), int(bonuses), int(adjusted), int(redeemed), int(expired), int(outstanding))


@dataclass(frozen=True)
class Effect:
    """Who bought within the window after a campaign message, next to comparable members who got nothing."""

    kind: str  # "birthday" | "winback" | "broadcast"
    recipients: int
    recipients_bought: int
    others: int
    others_bought: int

    @property
    def rate(self) -> float | None:
        return _share(self.recipients_bought, self.recipients)

    @property
    def baseline(self) -> float | None:
        return _share(self.others_bought, self.others)


async def effects(session: AsyncSession, program: Program, period: Period, days: int) -> list[Effect]:
    """For each kind of campaign message sent in the period: the share of recipients with a purchase within
    ``days`` of receiving it, and the same share, from the period's midpoint, for members who got none of it
    (for win-back: members lapsed as long at the midpoint). Not a randomized holdout: a first look, shown for
    the kinds of campaign that kept no holdout in the period (``lifts`` for those that did)."""
    window = timedelta(days=days)
    midpoint = period.start + period.length / 2
    dialect = session.bind.dialect.name if session.bind is not None else ""
    sent_notice: Any = select(col(Member.id).label("member_id"), col(Notice.created_at).label("sent_at")).join(
        Member, col(Member.telegram_id) == col(Notice.telegram_id)
    )
    sources = {
        "birthday": sent_notice.where(col(Notice.kind) == "birthday"),
        "winback": sent_notice.where(col(Notice.kind) == "winback"),
        "broadcast": select(col(Delivery.member_id).label("member_id"), col(Delivery.sent_at).label("sent_at")).where(
            col(Delivery.status) == "sent"
        ),
    }
    results = []
    base: int | None = None  # members since before the period: the same for every kind
    for kind, source in sources.items():
        sent = source.where(_between(source.selected_columns.sent_at, period.start, period.end)).subquery()
        bought = exists().where(
            col(Purchase.member_id) == sent.c.member_id,
            _valid(),
            _within(col(Purchase.occurred_at), sent.c.sent_at, window, dialect),
        )
        recipients, recipients_bought = (
            await session.execute(
                select(
                    func.count(distinct(sent.c.member_id)),
                    func.count(distinct(sent.c.member_id)).filter(bought),
                )
            )
        ).one()
        if not recipients:
            continue
        # Counted as sets rather than member by member: |others| = |eligible| − |eligible recipients|, and
        # |others who bought| = |eligible buyers| − |eligible buyers who were recipients|. Every set here is
        # small (recipients, a window's buyers) except the eligible members, which are only counted.
        lapse = timedelta(days=program.winback.days) if kind == "winback" else None

        def eligible(member_id: Any, lapse: timedelta | None = lapse) -> list[Any]:
            conditions = [
                col(Member.id) == member_id,
                col(Member.joined_at) < period.start,
                col(Member.erased_at).is_(None),
            ]
            if lapse is not None:
                conditions.append(
                    ~exists().where(
                        col(Purchase.member_id) == col(Member.id),
                        _valid(),
                        _between(col(Purchase.occurred_at), midpoint - lapse, midpoint),
                    )
                )
            return conditions

        if base is None:
            base = (
                await session.execute(
                    select(func.count())
                    .select_from(Member)
                    .where(col(Member.joined_at) < period.start, col(Member.erased_at).is_(None))
                )
            ).scalar_one()
        comparable = base
        if lapse is not None:
            comparable -= (
                await session.execute(
                    select(func.count(distinct(col(Purchase.member_id))))
                    .join(Member, col(Member.id) == col(Purchase.member_id))
                    .where(
                        _valid(),
                        _between(col(Purchase.occurred_at), midpoint - lapse, midpoint),
                        col(Member.joined_at) < period.start,
                        col(Member.erased_at).is_(None),
                    )
                )
            ).scalar_one()
        eligible_recipients = (
            await session.execute(
                select(func.count(distinct(sent.c.member_id))).where(exists().where(*eligible(sent.c.member_id)))
            )
        ).scalar_one()
        buyers = (
            select(col(Purchase.member_id))
            .where(_valid(), _between(col(Purchase.occurred_at), midpoint, midpoint + window))
            .distinct()
            .subquery()
        )
        eligible_buyers, recipient_buyers = (
            await session.execute(
                select(
                    func.count(),
                    func.count().filter(buyers.c.member_id.in_(select(sent.c.member_id))),
                ).where(exists().where(*eligible(buyers.c.member_id)))
            )
        ).one()
        count_others, count_bought = comparable - eligible_recipients, eligible_buyers - recipient_buyers
        results.append(Effect(kind, int(recipients), int(recipients_bought), int(count_others), int(count_bought)))
    return results


async def lifts(session: AsyncSession, period: Period, days: int) -> list[Lift]:
    """For each kind of campaign that drew a randomized holdout for a send in the period: its recipients and its
    holdout (every member drawn, sent to or not: intent to treat), each with the members who bought within ``days``
    of the send and their sales net of refunds, and the differences with 95% intervals (``loyalty.lift``). A member
    drawn by two campaigns counts once for each."""
    window = timedelta(days=days)
    dialect = session.bind.dialect.name if session.bind is not None else ""
    results = []
    for kind in KINDS:
        draws = (
            select(
                col(HoldoutDraw.id), col(HoldoutDraw.member_id), col(HoldoutDraw.held_out), col(HoldoutDraw.starts_at)
            )
            .where(col(HoldoutDraw.kind) == kind, _between(col(HoldoutDraw.starts_at), period.start, period.end))
            .subquery()
        )
        net = col(Purchase.amount_minor) - col(Purchase.refunded_minor)
        each = (
            select(draws.c.held_out.label("held_out"), func.coalesce(func.sum(net), 0).label("sales"))
            .select_from(draws)
            .outerjoin(
                Purchase,
                and_(
                    col(Purchase.member_id) == draws.c.member_id,
                    _valid(),
                    _within(col(Purchase.occurred_at), draws.c.starts_at, window, dialect),
                ),
            )
            .group_by(draws.c.id, draws.c.held_out)
            .subquery()
        )
        sales = cast(each.c.sales, Float)  # squares of large sums would overflow a 64-bit integer
        rows = (
            await session.execute(
                select(
                    each.c.held_out,
                    func.count(),
                    func.count().filter(each.c.sales > 0),
                    func.coalesce(func.sum(sales), 0.0),
                    func.coalesce(func.sum(sales * sales), 0.0),
                ).group_by(each.c.held_out)
            )
        ).all()
        if not rows:
            continue
        groups = {bool(h): Group(int(n), int(b), float(s), float(q)) for h, n, b, s, q in rows}
        empty = Group(0, 0, 0.0, 0.0)
        results.append(lift(kind, groups.get(False, empty), groups.get(True, empty)))
    return results


@dataclass(frozen=True)
class TierFigures:
    tier: str | None  # None: members without a tier
    members: int
    purchases: int
    amount_minor: int  # net of refunds

    @property
    def average_order_minor(self) -> float | None:
        return _share(self.amount_minor, self.purchases)

    @property
    def frequency(self) -> float | None:
        """Purchases per purchasing member in the period."""
        return _share(self.purchases, self.members)


async def by_tier(session: AsyncSession, period: Period) -> list[TierFigures]:
    rows = (
        await session.execute(
            select(
                col(Member.tier),
                func.count(distinct(col(Purchase.member_id))),
                func.count(),
                func.coalesce(func.sum(col(Purchase.amount_minor) - col(Purchase.refunded_minor)), 0),
            )
            .join(Member, col(Member.id) == col(Purchase.member_id))
            .where(
                _between(col(Purchase.occurred_at), period.start, period.end),
                _valid(),
            )
            .group_by(col(Member.tier))
        )
    ).all()
    return [TierFigures(tier, int(m), int(p), int(a)) for tier, m, p, a in rows]


@dataclass(frozen=True)
class StoreFigures:
    """One store of a chain over the period: its buyers, purchases, sales (net of refunds), coupons accepted at its
    tills, and the NPS of the members who bought there."""

    store: str
    buyers: int
    purchases: int
    sales_minor: int
    redemptions: int
    nps: Nps


async def by_store(session: AsyncSession, period: Period, stores: list[str]) -> list[StoreFigures]:
    """Every store the program lists, in its order (a store with nothing in the period shows zeros)."""
    if not stores:
        return []
    bought = (_between(col(Purchase.occurred_at), period.start, period.end), _valid())
    sales = {
        store: (int(m), int(p), int(a))
        for store, m, p, a in (
            await session.execute(
                select(
                    col(Purchase.store),
                    func.count(distinct(col(Purchase.member_id))),
                    func.count(),
                    func.coalesce(func.sum(col(Purchase.amount_minor) - col(Purchase.refunded_minor)), 0),
                )
                .where(col(Purchase.store).in_(stores), *bought)
                .group_by(col(Purchase.store))
            )
        ).all()
    }
    used = dict(
        (
            await session.execute(
                select(col(Coupon.used_store), func.count())
                .where(col(Coupon.used_store).in_(stores), _between(col(Coupon.used_at), period.start, period.end))
                .group_by(col(Coupon.used_store))
            )
        ).all()
    )
    out = []
    for store in stores:
        customers = select(col(Purchase.member_id)).where(col(Purchase.store) == store, *bought)
        answers = await session.execute(
            _latest_answers(
                col(Survey.member_id).in_(customers), _between(col(Survey.scored_at), period.start, period.end)
            )
        )
        buyers, purchases, amount = sales.get(store, (0, 0, 0))
        score = nps_of(int(value) for value, _ in answers.all() if value is not None)
        out.append(StoreFigures(store, buyers, purchases, amount, int(used.get(store, 0)), score))
    return out


async def tier_distribution(session: AsyncSession) -> dict[str, int]:
    """Members (not erased) by tier name; "" for members without a tier."""
    rows = (
        await session.execute(
            select(col(Member.tier), func.count()).where(col(Member.erased_at).is_(None)).group_by(col(Member.tier))
        )
    ).all()
    return {tier or "": int(count) for tier, count in rows}


# --------------------------------------------------------------------------- trends


@dataclass(frozen=True)
class Trend:
    edges: list[tuple[datetime, datetime]]
    new_members: list[int]
    purchases: list[int]
    buyers: list[int]
    nps: list[float | None]


async def trend(session: AsyncSession, period: Period, tz: ZoneInfo) -> Trend:
    edges = buckets(period, tz)
    size = len(edges)

    async def counts(column: Any, *where: Any, what: Any = None) -> list[int]:
        index = _bucket_index(column, edges).label("bucket")
        rows = (
            await session.execute(
                select(index, what if what is not None else func.count())
                .where(_between(column, period.start, period.end), *where)
                .group_by(index)
            )
        ).all()
        values = [0] * size
        for bucket, count in rows:
            if 0 <= bucket < size:
                values[bucket] = int(count)
        return values

    joined = await counts(col(Member.joined_at))
    purchases = await counts(col(Purchase.occurred_at), _valid())
    buyers = await counts(col(Purchase.occurred_at), _valid(), what=func.count(distinct(col(Purchase.member_id))))
    # Each respondent once in each bucket: their latest answer in it.
    answers = _latest_answers(
        _between(col(Survey.scored_at), period.start, period.end), bucket=_bucket_index(col(Survey.scored_at), edges)
    )
    scores: list[list[int]] = [[] for _ in edges]
    for score, bucket in (await session.execute(answers)).all():
        if 0 <= bucket < size and score is not None:
            scores[bucket].append(int(score))
    return Trend(edges, joined, purchases, buyers, [nps_of(s).score for s in scores])


@dataclass(frozen=True)
class Cohorts:
    """Retention by join month: for each cohort, the share of its members with a purchase n months after."""

    months: list[datetime]  # the cohorts' first days, oldest first
    sizes: list[int]
    active: list[list[float | None]]  # active[cohort][n]; None for months still to come


async def cohorts(session: AsyncSession, now: datetime, tz: ZoneInfo, count: int = 12) -> Cohorts:
    local = now.astimezone(tz)
    this_month = datetime(local.year, local.month, 1, tzinfo=tz)
    firsts = [months_after(this_month, -n) for n in range(count - 1, -1, -1)]
    edges = [(first, months_after(first, 1)) for first in firsts]
    join_bucket = _bucket_index(col(Member.joined_at), edges).label("cohort")
    sizes = [0] * count
    for bucket, size in (
        await session.execute(
            select(join_bucket, func.count()).where(col(Member.joined_at) >= firsts[0]).group_by(join_bucket)
        )
    ).all():
        if 0 <= bucket < count:
            sizes[bucket] = int(size)
    buy_bucket = _bucket_index(col(Purchase.occurred_at), edges).label("month")
    # Members per (cohort, month) in two steps: a COUNT(DISTINCT) per group would sort every purchase.
    pairs = (
        select(col(Purchase.member_id), join_bucket, buy_bucket)
        .join(Member, col(Member.id) == col(Purchase.member_id))
        .where(col(Member.joined_at) >= firsts[0], col(Purchase.occurred_at) >= firsts[0], _valid())
        .group_by(col(Purchase.member_id), join_bucket, buy_bucket)
        .subquery()
    )
    rows = (
        await session.execute(
            select(pairs.c.cohort, pairs.c.month, func.count()).group_by(pairs.c.cohort, pairs.c.month)
        )
    ).all()
    active: list[list[float | None]] = [[None] * count for _ in range(count)]
    for cohort in range(count):
        for n in range(count - cohort):
            active[cohort][n] = 0.0 if sizes[cohort] else None
    for cohort, month, buyers in rows:
        n = month - cohort
        if 0 <= cohort < count and 0 <= n < count - cohort and sizes[cohort]:
            active[cohort][n] = int(buyers) / sizes[cohort]
    return Cohorts(firsts, sizes, active)


# --------------------------------------------------------------------------- the dashboard


@dataclass(frozen=True)
class MissionFigures:
    key: str
    completed: int  # members paid for it in the period (and not taken back)
    rate: float | None  # of the members it was open to; None: no members


@dataclass(frozen=True)
class Engagement:
    """Daily check-in and missions in the period."""

    checkins: int = 0
    checkin_members: int = 0  # distinct members who checked in
    missions: list[MissionFigures] = field(default_factory=list)


async def engagement(session: AsyncSession, program: Program, period: Period) -> Engagement:
    made, who = (
        await session.execute(
            select(func.count(), func.count(distinct(col(Checkin.member_id)))).where(
                col(Checkin.created_at) >= period.start, col(Checkin.created_at) < period.end
            )
        )
    ).one()
    rates = await missions.completion_rates(session, program, period.start, period.end)
    figures = [MissionFigures(r.rule.key, r.completed, r.completed / r.members if r.members else None) for r in rates]
    return Engagement(int(made), int(who), figures)


@dataclass(frozen=True)
class Dashboard:
    period: Period
    members: Members
    customers: Customers
    nps: Nps
    support: Support
    points: Points
    effects: list[Effect]
    lifts: list[Lift]
    by_tier: list[TierFigures]
    tiers: dict[str, int]  # "": no tier
    trend: Trend
    cohorts: Cohorts
    by_store: list[StoreFigures] = field(default_factory=list)  # with [[stores]]; older snapshots have none
    engagement: Engagement = field(default_factory=Engagement)  # check-ins and missions; older snapshots have none


async def dashboard(sessions: SessionFactory, program: Program, period: Period, effect_days: int = 14) -> Dashboard:
    """Every figure of /stats and `loyalty report`, the independent ones at once on their own connections."""

    async def run(compute: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with sessions() as session:
            postgres = session.bind is not None and session.bind.dialect.name == "postgresql"
            if postgres:
                # Big one-off aggregates: JIT compilation costs more than it saves here, and sorts of a million
                # rows should stay in memory. Reset before the connection goes back to the pool.
                await session.execute(text("SET jit = off"))
                await session.execute(text("SET work_mem = '64MB'"))
            try:
                return await compute(session)
            except BaseException:
                await session.rollback()  # so that the reset can run, and the error raised is the query's own
                raise
            finally:
                if postgres:
                    await session.execute(text("RESET ALL"))

    tz = program.tz
    parts = await asyncio.gather(
        run(lambda s: members(s, period)),
        run(lambda s: customers(s, period)),
        run(lambda s: nps(s, period.start, period.end)),
        run(lambda s: support(s, period)),
        run(lambda s: points(s, period)),
        run(lambda s: effects(s, program, period, effect_days)),
        run(lambda s: lifts(s, period, effect_days)),
        run(lambda s: by_tier(s, period)),
        run(tier_distribution),
        run(lambda s: trend(s, period, tz)),
        run(lambda s: cohorts(s, period.end, tz)),
        run(lambda s: by_store(s, period, [store.key for store in program.stores])),
        run(lambda s: engagement(s, program, period)),
    )
    return Dashboard(period, *parts)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- snapshots

SNAPSHOT_PERIODS = ("7d", "30d", "90d", "12m")
SNAPSHOT_MAX_AGE = timedelta(minutes=15)  # the scheduler refreshes them every 10 minutes
_DASHBOARD = TypeAdapter(Dashboard)


async def fresh_snapshot(
    session: AsyncSession, label: str, now: datetime, max_age: timedelta | None = SNAPSHOT_MAX_AGE
) -> Dashboard | None:
    """The stored dashboard for a standard period if it is fresh enough (``max_age`` None: however old), else
    None."""
    row = await session.get(StatsSnapshot, label, populate_existing=True)
    if row is None or (max_age is not None and now - row.computed_at > max_age):
        return None
    try:
        return _DASHBOARD.validate_json(row.payload)
    except ValueError:
        return None  # written by another version of the code: compute afresh


async def save_snapshot(session: AsyncSession, board: Dashboard, now: datetime) -> None:
    await begin_write(session)
    row = await session.get(StatsSnapshot, board.period.label)
    payload = _DASHBOARD.dump_json(board).decode()
    if row is None:
        session.add(StatsSnapshot(label=board.period.label, computed_at=now, payload=payload))
    else:
        row.computed_at, row.payload = now, payload
        session.add(row)
    await session.commit()


async def refresh_snapshots(sessions: SessionFactory, program: Program, now: datetime) -> int:
    """The scheduler's job: compute the standard periods' dashboards and store them."""
    for label in SNAPSHOT_PERIODS:
        period = parse_period(label, now, program.tz)
        assert period is not None
        board = await dashboard(sessions, program, period, program.analytics.effect_days)
        async with sessions() as session:
            await save_snapshot(session, board, now)
    return len(SNAPSHOT_PERIODS)


async def board_for(sessions: SessionFactory, program: Program, period: Period, now: datetime) -> Dashboard:
    """What /stats and the console's dashboard show: the scheduler's snapshot for a standard period when fresh;
    else computed now, and for a standard period kept as its snapshot for the next reader. Another length is
    computed each time (the scheduler keeps none for it). The board's ``period.end`` is when it was computed."""
    standard = period.label in SNAPSHOT_PERIODS
    if standard:
        async with sessions() as session:
            snapshot = await fresh_snapshot(session, period.label, now)
        if snapshot is not None:
            return snapshot
    try:
        board = await dashboard(sessions, program, period, program.analytics.effect_days)
    except Exception:
        # The figures take longer than a statement may (a large program under load): the last snapshot, however
        # old, says more than an error; its "as of" line tells its age.
        if standard:
            async with sessions() as session:
                if (stale := await fresh_snapshot(session, period.label, now, max_age=None)) is not None:
                    log.warning("the %s figures could not be computed: showing the snapshot of %s", period.label,
                                stale.period.end, exc_info=True)  # fmt: skip
                    return stale
        raise
    if standard:
        async with sessions() as session:
            await save_snapshot(session, board, now)
    return board
