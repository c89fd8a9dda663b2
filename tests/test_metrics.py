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
            refunded = rng.choice([0, 0, 0, 0, amount, amount // 2, amount // 3])
            # One in five came in later than it happened: an import, a till that synced late.
            recorded = (
                min(NOW - timedelta(minutes=1), at + timedelta(days=rng.randint(1, 400))) if rng.random() < 0.2 else at
            )
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
                    created_at=recorded,
                )
            )
            data.ledger.append(
                LedgerEntry(
                    member_id=member.id, kind="purchase", points=amount // 100, remaining=0, created_at=recorded
                )
            )
        for kind, sign in (
            ("spend", -1),
            ("expire", -1),
            ("welcome", 1),
            ("adjust", 1),
            ("adjust", -1),
            ("share", 1),
            ("birthday", 1),
            ("refund", -1),
        ):
            if rng.random() < 0.3:
                at = NOW - timedelta(days=rng.randint(0, 400))
                data.ledger.append(
                    LedgerEntry(member_id=member.id, kind=kind, points=sign * rng.randint(1, 300), created_at=at)
                )
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):  # some members answer the survey after several purchases
            at = NOW - timedelta(days=rng.randint(0, 200), minutes=rng.randint(0, 1440))
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
    present = {m.id for m in alive}
    assert got_members.total == len(alive)
    assert got_members.new == sum(1 for m in alive if _in(m.joined_at, start, end))
    did = {"spend", "share", "profile", "referral"}
    active = {e.member_id for e in data.ledger if e.kind in did and _in(e.created_at, start, end)}
    active |= {p.member_id for p in data.purchases if _valid(p) and _in(p.occurred_at, start, end)}
    assert got_members.active == len(active & present)

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
    last_year = {m: sum(1 for t in times if _in(t, end - YEAR, end)) for m, times in bought.items() if m in present}
    assert got.customers == sum(1 for n in last_year.values() if n >= 1)
    assert got.repeat_customers == sum(1 for n in last_year.values() if n > 1)
    assert got.loyal == sum(1 for n in last_year.values() if n > 4)
    assert got.loyal_rate == got.loyal / got.customers and got.repeat_rate == got.repeat_customers / got.customers
    previous = {m for m, times in bought.items() if any(_in(t, start - period.length, start) for t in times)}
    assert got.previous_buyers == len(previous)
    assert got.churned == sum(1 for m in previous if in_period.get(m, 0) == 0)
    assert got.buyers > 0 and got.previous_buyers > 0  # the data set exercises the figures
    assert any(m.id not in present and m.id in bought for m in data.members), "and erased customers"


@pytest.mark.parametrize("period", PERIODS, ids=lambda p: p.label)
async def test_nps_support_points_and_tiers(sessions: SessionFactory, data: Data, period: Period) -> None:
    start, end = period.start, period.end
    async with sessions() as session:
        nps = await metrics.nps(session, start, end)
        support = await metrics.support(session, period)
        points = await metrics.points(session, period)
        tiers = await metrics.by_tier(session, period)
        distribution = await metrics.tier_distribution(session)

    latest: dict[int, Survey] = {}
    for survey in data.surveys:
        if survey.score is not None and _in(survey.scored_at, start, end):
            seen = latest.get(survey.member_id)
            if seen is None or (survey.scored_at, survey.id or 0) > (seen.scored_at, seen.id or 0):
                latest[survey.member_id] = survey
    scores = [s.score for s in latest.values() if s.score is not None]
    assert len(scores) < sum(1 for s in data.surveys if _in(s.scored_at, start, end)), "some answered twice"
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
    assert points.purchases == sum(
        p.points - p.points * p.refunded_minor // p.amount_minor
        for p in data.purchases
        if _in(p.occurred_at, start, end)
    )
    bonus_kinds = {"welcome", "referral", "share", "profile", "birthday", "winback", "vip"}
    assert points.bonuses == sum(e.points for e in entries if e.kind in bonus_kinds)
    assert points.adjusted == sum(e.points for e in entries if e.kind == "adjust")
    assert points.earned == points.purchases + points.bonuses
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
    latest: list[dict[int, Survey]] = [{} for _ in edges]
    for survey in data.surveys:
        if survey.scored_at is not None and (i := where(survey.scored_at)) is not None:
            seen = latest[i].get(survey.member_id)
            if seen is None or (survey.scored_at, survey.id or 0) > (seen.scored_at, seen.id or 0):
                latest[i][survey.member_id] = survey
    assert trend.nps == [metrics.nps_of(s.score or 0 for s in bucket.values()).score for bucket in latest]

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


async def _members(sessions: SessionFactory, count: int, joined: datetime = NOW - 2 * YEAR) -> list[Member]:
    async with sessions() as session:
        await begin_write(session)
        made = [
            Member(telegram_id=80_000 + i, chat_id=80_000 + i, code=f"S{i:05d}", joined_at=joined) for i in range(count)
        ]
        session.add_all(made)
        await session.commit()
        return made


async def _add(sessions: SessionFactory, *rows: object) -> None:
    async with sessions() as session:
        await begin_write(session)
        session.add_all(rows)
        await session.commit()


def _purchase(member: Member, n: int, at: datetime, *, refunded: int = 0, recorded: datetime | None = None) -> Purchase:
    return Purchase(
        member_id=member.id or 0,
        source="receipt",
        external_id=f"S{member.id}-{n}",
        amount_minor=1000,
        refunded_minor=refunded,
        currency="CNY",
        points=10,
        occurred_at=at,
        created_at=recorded or at,
    )


async def test_a_purchase_refunded_in_full_leaves_the_member_inactive(sessions: SessionFactory) -> None:
    ann, ben = await _members(sessions, 2)
    week_ago = NOW - timedelta(days=7)
    await _add(
        sessions,
        _purchase(ann, 1, week_ago, refunded=1000),
        LedgerEntry(member_id=ann.id or 0, kind="purchase", points=10, created_at=week_ago),
        LedgerEntry(member_id=ann.id or 0, kind="refund", points=-10, created_at=week_ago),
        _purchase(ben, 1, week_ago, refunded=500),  # half refunded: still a purchase
    )
    async with sessions() as session:
        figures = await metrics.members(session, PERIODS[0])
        points = await metrics.points(session, PERIODS[0])
    assert (figures.total, figures.active) == (2, 1)
    assert points.purchases == 5, "Ann's purchase earned nothing in the end; Ben kept half of his 10"


async def test_a_member_answering_the_survey_three_times_counts_once(sessions: SessionFactory) -> None:
    ann, ben = await _members(sessions, 2)
    await _add(
        sessions,
        *(
            Survey(member_id=ann.id or 0, sent_at=NOW - timedelta(days=d), score=10, scored_at=NOW - timedelta(days=d))
            for d in (20, 10, 5)
        ),
        Survey(member_id=ben.id or 0, sent_at=NOW - timedelta(days=3), score=2, scored_at=NOW - timedelta(days=3)),
    )
    async with sessions() as session:
        score = await metrics.nps(session, NOW - timedelta(days=30), NOW)
        trend = await metrics.trend(session, PERIODS[0], SHANGHAI)
    # One promoter and one detractor: 0, where counting every answer made it (3 − 1) / 4 = +50.
    assert (score.promoters, score.detractors, score.score) == (1, 1, 0)
    assert sum(1 for value in trend.nps if value is not None) == 4  # each answer on its own day


async def test_a_year_of_purchases_imported_today_lands_where_it_happened(sessions: SessionFactory) -> None:
    [ann] = await _members(sessions, 1)
    today = NOW - timedelta(hours=1)
    bought = [NOW - timedelta(days=30 * k + 45) for k in range(12)]  # monthly, the last six weeks ago
    await _add(
        sessions,
        *(_purchase(ann, k, at, recorded=today) for k, at in enumerate(bought)),
        *(LedgerEntry(member_id=ann.id or 0, kind="purchase", points=10, created_at=today) for _ in bought),
    )
    async with sessions() as session:
        month = await metrics.members(session, PERIODS[0])
        month_points = await metrics.points(session, PERIODS[0])
        quarter = await metrics.points(session, PERIODS[1])
        year = await metrics.customers(session, PERIODS[2])
    assert month.active == 0 and month_points.purchases == 0, "nothing was bought in the last 30 days"
    assert quarter.purchases == 20  # the purchases of 45 and 75 days ago
    assert year.customers == 1 and year.repeat_customers == 1 and year.loyal == 1


async def test_the_loyal_rate_counts_only_customers(sessions: SessionFactory) -> None:
    members = await _members(sessions, 10)  # ten members; four of them buy
    rows: list[object] = []
    for i, member in enumerate(members[:4]):
        times = 6 if i == 0 else 2 if i == 1 else 1  # one loyal, one repeat, two once
        rows += [_purchase(member, k, NOW - timedelta(days=10 + 30 * k)) for k in range(times)]
    await _add(sessions, *rows)
    async with sessions() as session:
        figures = await metrics.customers(session, PERIODS[0])
    assert figures.customers == 4 and figures.loyal_rate == pytest.approx(1 / 4), "not 1 of all 10 members"
    assert figures.repeat_rate == pytest.approx(2 / 4)
    assert figures.period_repeat_rate == 0, "in the last 30 days nobody bought twice"
