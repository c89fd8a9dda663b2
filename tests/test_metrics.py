"""Every metric on a generated data set, against the same figure computed plainly here from the raw rows."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from loyalty import metrics
from loyalty.metrics import Period, buckets, parse_period
from loyalty.program import Program
from storage.database import SessionFactory, begin_write
from storage.models import Broadcast, Delivery, LedgerEntry, Member, Notice, Purchase, Survey, Thread

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")
YEAR = timedelta(days=365)


@dataclass
class Data:
    members: list[Member] = field(default_factory=list)
    purchases: list[Purchase] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    surveys: list[Survey] = field(default_factory=list)
    threads: list[Thread] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)


async def _store_rows(sessions: SessionFactory, data: Data) -> None:
    """Everything but the members (stored first, for their ids)."""
    async with sessions() as session:
        await begin_write(session)
        for rows in (data.purchases, data.ledger, data.surveys, data.threads, data.notices):
            session.add_all(rows)
        broadcast = Broadcast(created_by=1, content="{}", status="done")
        session.add(broadcast)
        await session.flush()
        for delivery in data.deliveries:
            delivery.broadcast_id = broadcast.id or 0
        session.add_all(data.deliveries)
        await session.commit()


def _generate(seed: int = 7) -> Data:
    rng = random.Random(seed)
    data = Data()
    for i in range(80):
        joined = NOW - timedelta(days=rng.randint(0, 800), minutes=rng.randint(0, 1440))
        erased = joined + timedelta(days=rng.randint(1, 300)) if rng.random() < 0.05 else None
        member = Member(
            telegram_id=50_000 + i,
            chat_id=50_000 + i,
            code=f"T{i:05d}",
            joined_at=joined,
            erased_at=erased if erased and erased < NOW else None,
            tier=rng.choice([None, None, "Silver", "Gold"]),
            points=rng.randint(0, 900),
        )
        data.members.append(member)
    return data


def _fill(data: Data, seed: int = 7) -> None:
    """Rows that point at members (by id, once they are stored)."""
    rng = random.Random(seed)
    for n, member in enumerate(data.members):
        assert member.id is not None
        first = member.joined_at
        for k in range(rng.choice([0, 1, 1, 2, 3, 5, 6, 9])):
            at = first + timedelta(days=rng.randint(0, max(1, (NOW - first).days)), minutes=rng.randint(0, 1440))
            if at >= NOW:
                continue
            amount = rng.randint(500, 9000)
            refunded = rng.choice([0, 0, 0, 0, amount, amount // 2])
            data.purchases.append(
                Purchase(
                    member_id=member.id,
                    source="receipt",
                    external_id=f"R{n}-{k}",
                    amount_minor=amount,
                    refunded_minor=refunded,
                    currency="CNY",
                    points=amount // 100,
                    occurred_at=at,
                    created_at=at,
                )
            )
            data.ledger.append(
                LedgerEntry(member_id=member.id, kind="purchase", points=amount // 100, remaining=0, created_at=at)
            )
        for kind, sign in (("spend", -1), ("expire", -1), ("welcome", 1), ("adjust", 1), ("share", 1)):
            if rng.random() < 0.3:
                at = NOW - timedelta(days=rng.randint(0, 400))
                data.ledger.append(
                    LedgerEntry(member_id=member.id, kind=kind, points=sign * rng.randint(1, 300), created_at=at)
                )
        if rng.random() < 0.4:
            at = NOW - timedelta(days=rng.randint(0, 200))
            data.surveys.append(Survey(member_id=member.id, sent_at=at, score=rng.randint(0, 10), scored_at=at))
        if rng.random() < 0.3:
            opened = NOW - timedelta(days=rng.randint(0, 200))
            answered = opened + timedelta(minutes=rng.randint(1, 600)) if rng.random() < 0.8 else None
            rating = rng.choice([None, 1, 3, 4, 5, 5])
            data.threads.append(
                Thread(
                    member_id=member.id,
                    opened_at=opened,
                    first_response_at=answered,
                    rating=rating,
                    rated_at=opened + timedelta(days=1) if rating else None,
                )
            )
        for kind in ("birthday", "winback"):
            if rng.random() < 0.25:
                data.notices.append(
                    Notice(
                        kind=kind,
                        telegram_id=member.telegram_id,
                        period=str(n),
                        created_at=NOW - timedelta(days=rng.randint(0, 120)),
                    )
                )
        if rng.random() < 0.3:
            data.deliveries.append(
                Delivery(
                    broadcast_id=0,
                    member_id=member.id,
                    status=rng.choice(["sent", "failed"]),
                    sent_at=NOW - timedelta(days=rng.randint(0, 120)),
                )
            )


@pytest.fixture
async def data(sessions: SessionFactory) -> Data:
    generated = _generate()
    async with sessions() as session:
        await begin_write(session)
        session.add_all(generated.members)
        await session.commit()
        for member in generated.members:
            await session.refresh(member)
    _fill(generated)
    await _store_rows(sessions, generated)
    return generated


def _valid(p: Purchase) -> bool:
    return p.refunded_minor < p.amount_minor


def _in(moment: datetime | None, start: datetime, end: datetime) -> bool:
    return moment is not None and start <= moment < end


PERIODS = [
    Period("30d", NOW - timedelta(days=30), NOW),
    Period("90d", NOW - timedelta(days=90), NOW),
    Period("12m", NOW - YEAR, NOW),
]


@pytest.mark.parametrize("period", PERIODS, ids=lambda p: p.label)
async def test_member_and_customer_figures(sessions: SessionFactory, data: Data, period: Period) -> None:
    start, end = period.start, period.end
    async with sessions() as session:
        got_members = await metrics.members(session, period)
        got = await metrics.customers(session, period)

    alive = [m for m in data.members if m.joined_at < end and (m.erased_at is None or m.erased_at >= end)]
    assert got_members.total == len(alive)
    assert got_members.new == sum(1 for m in data.members if _in(m.joined_at, start, end))
    did = {"purchase", "spend", "share", "profile", "referral"}
    active = {e.member_id for e in data.ledger if e.kind in did and _in(e.created_at, start, end)}
    assert got_members.active == len(active)

    bought: dict[int, list[datetime]] = defaultdict(list)
    for p in data.purchases:
        if _valid(p):
            bought[p.member_id].append(p.occurred_at)
    base_start = {m for m, times in bought.items() if any(_in(t, start - YEAR, start) for t in times)}
    base_end = {m for m, times in bought.items() if any(_in(t, end - YEAR, end) for t in times)}
    assert (got.at_start, got.at_end, got.new) == (len(base_start), len(base_end), len(base_end - base_start))
    in_period = {m: sum(1 for t in times if _in(t, start, end)) for m, times in bought.items()}
    assert got.buyers == sum(1 for n in in_period.values() if n >= 1)
    assert got.repeat_buyers == sum(1 for n in in_period.values() if n >= 2)
    assert got.loyal == sum(1 for times in bought.values() if sum(1 for t in times if _in(t, end - YEAR, end)) > 4)
    assert got.members == len(alive)
    previous = {m for m, times in bought.items() if any(_in(t, start - period.length, start) for t in times)}
    assert got.previous_buyers == len(previous)
    assert got.churned == sum(1 for m in previous if in_period.get(m, 0) == 0)
    assert got.buyers > 0 and got.previous_buyers > 0  # the data set exercises the figures


@pytest.mark.parametrize("period", PERIODS, ids=lambda p: p.label)
async def test_nps_support_points_and_tiers(sessions: SessionFactory, data: Data, period: Period) -> None:
    start, end = period.start, period.end
    async with sessions() as session:
        nps = await metrics.nps(session, start, end)
        support = await metrics.support(session, period)
        points = await metrics.points(session, period)
        tiers = await metrics.by_tier(session, period)
        distribution = await metrics.tier_distribution(session)

    scores = [s.score for s in data.surveys if s.score is not None and _in(s.scored_at, start, end)]
    assert (nps.promoters, nps.passives, nps.detractors) == (
        sum(1 for s in scores if s >= 9),
        sum(1 for s in scores if 7 <= s <= 8),
        sum(1 for s in scores if s <= 6),
    )
    rated = [t.rating for t in data.threads if t.rating is not None and _in(t.rated_at, start, end)]
    assert (support.ratings, support.satisfied) == (len(rated), sum(1 for r in rated if r >= 4))
    waits = sorted(
        t.first_response_at - t.opened_at
        for t in data.threads
        if t.first_response_at is not None and _in(t.opened_at, start, end)
    )
    if waits:
        half = len(waits) // 2
        expected = waits[half] if len(waits) % 2 else (waits[half - 1] + waits[half]) / 2
        assert support.median_first_response == expected
    else:
        assert support.median_first_response is None

    entries = [e for e in data.ledger if _in(e.created_at, start, end)]
    assert points.earned == sum(e.points for e in entries if e.points > 0)
    assert points.redeemed == -sum(e.points for e in entries if e.kind == "spend")
    assert points.expired == -sum(e.points for e in entries if e.kind == "expire")
    assert points.outstanding == sum(m.points for m in data.members if m.points > 0)

    by_id = {m.id: m for m in data.members}
    expected_tiers: dict[str | None, list[int]] = defaultdict(lambda: [0, 0])
    buyers: dict[str | None, set[int]] = defaultdict(set)
    for p in data.purchases:
        if _valid(p) and _in(p.occurred_at, start, end):
            tier = by_id[p.member_id].tier
            expected_tiers[tier][0] += 1
            expected_tiers[tier][1] += p.amount_minor - p.refunded_minor
            buyers[tier].add(p.member_id)
    assert {t.tier: (t.members, t.purchases, t.amount_minor) for t in tiers} == {
        tier: (len(buyers[tier]), n, amount) for tier, (n, amount) in expected_tiers.items()
    }
    expected_distribution: dict[str, int] = defaultdict(int)
    for m in data.members:
        if m.erased_at is None:
            expected_distribution[m.tier or ""] += 1
    assert distribution == expected_distribution


async def test_campaign_effects(sessions: SessionFactory, data: Data, program: Program) -> None:
    period = PERIODS[1]
    days = 14
    async with sessions() as session:
        effects = {e.kind: e for e in await metrics.effects(session, program, period, days)}
    window = timedelta(days=days)
    midpoint = period.start + period.length / 2
    by_telegram = {m.telegram_id: m for m in data.members}
    valid = [p for p in data.purchases if _valid(p)]

    def bought(member_id: int, start: datetime, end: datetime) -> bool:
        return any(p.member_id == member_id and _in(p.occurred_at, start, end) for p in valid)

    sent: dict[str, list[tuple[int, datetime]]] = {
        kind: [
            (by_telegram[n.telegram_id].id or 0, n.created_at)
            for n in data.notices
            if n.kind == kind and _in(n.created_at, period.start, period.end)
        ]
        for kind in ("birthday", "winback")
    }
    sent["broadcast"] = [
        (d.member_id, d.sent_at)
        for d in data.deliveries
        if d.status == "sent" and d.sent_at is not None and _in(d.sent_at, period.start, period.end)
    ]
    assert set(effects) == {kind for kind, rows in sent.items() if rows}
    for kind, rows in sent.items():
        if not rows:
            continue
        recipients = {m for m, _ in rows}
        took = {m for m, at in rows if bought(m, at, at + window)}
        others = [
            m for m in data.members if m.joined_at < period.start and m.erased_at is None and m.id not in recipients
        ]
        if kind == "winback":
            lapse = timedelta(days=program.winback.days)
            others = [m for m in others if not bought(m.id or 0, midpoint - lapse, midpoint)]
        others_took = [m for m in others if bought(m.id or 0, midpoint, midpoint + window)]
        effect = effects[kind]
        assert (effect.recipients, effect.recipients_bought, effect.others, effect.others_bought) == (
            len(recipients),
            len(took),
            len(others),
            len(others_took),
        ), kind


@pytest.mark.parametrize("period", PERIODS, ids=lambda p: p.label)
async def test_trend_and_cohorts(sessions: SessionFactory, data: Data, period: Period) -> None:
    async with sessions() as session:
        trend = await metrics.trend(session, period, SHANGHAI)
        cohorts = await metrics.cohorts(session, NOW, SHANGHAI)
    edges = trend.edges
    assert edges[0][0] == period.start and edges[-1][1] == period.end
    assert all(a[1] == b[0] for a, b in pairwise(edges))

    def where(moment: datetime) -> int | None:
        return next((i for i, (a, b) in enumerate(edges) if a <= moment < b), None)

    joined, purchases = [0] * len(edges), [0] * len(edges)
    buyers: list[set[int]] = [set() for _ in edges]
    for m in data.members:
        if (i := where(m.joined_at)) is not None:
            joined[i] += 1
    for p in data.purchases:
        if _valid(p) and (i := where(p.occurred_at)) is not None:
            purchases[i] += 1
            buyers[i].add(p.member_id)
    assert trend.new_members == joined and trend.purchases == purchases
    assert trend.buyers == [len(b) for b in buyers]
    assert sum(purchases) > 0

    # Cohorts by join month, in Shanghai time.
    def month_of(moment: datetime) -> tuple[int, int]:
        local = moment.astimezone(SHANGHAI)
        return local.year, local.month

    months = [(m.year, m.month) for m in cohorts.months]
    members_of: dict[tuple[int, int], set[int]] = defaultdict(set)
    for m in data.members:
        members_of[month_of(m.joined_at)].add(m.id or 0)
    assert cohorts.sizes == [len(members_of[month]) for month in months]
    for c, month in enumerate(months):
        for n in range(len(months) - c):
            active = {
                p.member_id
                for p in data.purchases
                if _valid(p) and p.member_id in members_of[month] and month_of(p.occurred_at) == months[c + n]
            }
            expected = len(active) / len(members_of[month]) if members_of[month] else None
            assert cohorts.active[c][n] == (pytest.approx(expected) if expected is not None else None), (c, n)
        assert all(value is None for value in cohorts.active[c][len(months) - c :])


async def test_retention_worked_example(sessions: SessionFactory) -> None:
    """10 customers on Jan 1, 4 new ones, 12 at the end of June: (12 − 4) / 10 = 80%."""
    jan1 = datetime(2026, 1, 1, tzinfo=UTC)
    jul1 = datetime(2026, 7, 1, tzinfo=UTC)
    rows: list[tuple[int, datetime]] = []
    for i in range(10):
        # Eight buy again in the second half of 2025 (still customers at the end of June); two last bought in
        # spring 2025 and are no customers by then.
        rows.append((i, datetime(2025, 4, 1, tzinfo=UTC)))
        if i < 8:
            rows.append((i, datetime(2025, 9, 1, tzinfo=UTC)))
    for i in range(10, 14):
        rows.append((i, datetime(2026, 2, 14, tzinfo=UTC)))
    async with sessions() as session:
        await begin_write(session)
        members = [
            Member(
                telegram_id=70_000 + i, chat_id=70_000 + i, code=f"W{i:05d}", joined_at=datetime(2025, 1, 1, tzinfo=UTC)
            )
            for i in range(14)
        ]
        session.add_all(members)
        await session.flush()
        for n, (i, at) in enumerate(rows):
            session.add(
                Purchase(
                    member_id=members[i].id or 0,
                    source="receipt",
                    external_id=f"W{n}",
                    amount_minor=1000,
                    currency="CNY",
                    occurred_at=at,
                    created_at=at,
                )
            )
        await session.commit()
        figures = await metrics.customers(session, Period("6m", jan1, jul1))
    assert (figures.at_start, figures.new, figures.at_end) == (10, 4, 12)
    assert figures.retention_rate == pytest.approx(0.8)


def test_periods() -> None:
    now = datetime(2026, 3, 31, 4, 0, tzinfo=UTC)
    assert parse_period("7d", now, SHANGHAI) == Period("7d", now - timedelta(days=7), now)
    twelve = parse_period("12m", now, SHANGHAI)
    assert twelve is not None and twelve.start == datetime(2025, 3, 31, 4, 0, tzinfo=UTC)
    one = parse_period("1m", now, SHANGHAI)  # March 31 less a month: the last day of February
    assert one is not None and one.start.astimezone(SHANGHAI).date().isoformat() == "2026-02-28"
    for bad in ("", "0d", "7", "7w", "-7d", "99999d", "121m", "7d; drop"):
        assert parse_period(bad, now, SHANGHAI) is None, bad
    days = buckets(Period("7d", now - timedelta(days=7), now), SHANGHAI)
    assert len(days) == 8 and days[1][0].astimezone(SHANGHAI).hour == 0
    weeks = buckets(Period("90d", now - timedelta(days=90), now), SHANGHAI)
    assert 13 <= len(weeks) <= 14
    months = buckets(Period("12m", now - YEAR, now), SHANGHAI)
    assert len(months) == 13 and months[-1][0] == datetime(2026, 3, 1, tzinfo=SHANGHAI)
