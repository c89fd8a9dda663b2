"""Randomized holdouts: the seeded draw keeps its share and is stable, the lift's intervals cover a known true lift
about 95% of the time, the report computes what a plain computation of the stored facts gives, and held-out
members are never told, nor given anything, in broadcasts, birthday offers and win-back nudges."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlmodel import col

from loyalty import broadcasts, holdouts, metrics
from loyalty.holdouts import BadHoldout, coin, parse_share, take_share
from loyalty.lift import MINIMUM, Group, conversion_difference, lift, sales_difference
from loyalty.metrics import Period
from loyalty.profile import Birthday, set_birthday
from loyalty.program import AnalyticsRules, BirthdayRules, Program, WinbackRules
from loyalty.report import rows
from loyalty.segments import Segment
from notifications import reminders
from storage.database import SessionFactory, begin_write
from storage.models import Broadcast, Delivery, HoldoutDraw, Member, Purchase
from tests.harness import ADMIN_ID, BotHarness
from tests.test_miniapp import auth, services_with_app
from web.server import make_http_app

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)

# --------------------------------------------------------------------------- the draw


def test_the_draw_keeps_its_share_and_decides_the_same_again() -> None:
    ids = range(1, 20_001)
    held = [m for m in ids if coin("broadcast", "7", m, 0.1)]
    # 20,000 fair draws at 10%: the standard deviation of the share is 0.2 points; 4 of them is 0.85.
    assert abs(len(held) / 20_000 - 0.1) < 0.0085
    assert held == [m for m in ids if coin("broadcast", "7", m, 0.1)]  # seeded: a re-run decides the same
    other = {m for m in ids if coin("broadcast", "8", m, 0.1)}
    # Another campaign draws afresh: its holdout overlaps this one by chance only (about 10% of it).
    assert abs(len(other & set(held)) / len(held) - 0.1) < 0.03
    assert not any(coin("birthday", "2026", m, 0) for m in ids)


def test_holdout_shares_as_admins_write_them() -> None:
    assert [parse_share(t) for t in ("0.1", "10%", " 5 % ", "0", "0,25", "50%")] == [0.1, 0.1, 0.05, 0.0, 0.25, 0.5]
    assert [parse_share(t) for t in ("", "abc", "-1%", "60%", "0.51", "nan", "inf")] == [None] * 7
    assert take_share("tier=Gold holdout=10% inactive=30") == ("tier=Gold inactive=30", 0.1)
    assert take_share("all") == ("all", 0.0)
    with pytest.raises(BadHoldout):
        take_share("holdout=lots")


# --------------------------------------------------------------------------- the estimator, on simulated campaigns


def _simulate(rng: random.Random, n: int, p: float, mean: float) -> Group:
    """n members; each buys with probability p, a buyer spends an exponential amount with this mean."""
    buyers, total, squares = 0, 0.0, 0.0
    for _ in range(n):
        if rng.random() < p:
            spent = round(rng.expovariate(1 / mean))
            buyers += 1
            total += spent
            squares += spent * spent
    return Group(n, buyers, total, squares)


def test_the_intervals_cover_a_known_true_lift_in_about_95_percent_of_campaigns() -> None:
    # Recipients buy at 24% and spend 60.00 on average, the holdout at 20% and 50.00: the true lifts are
    # +4 points of conversion and 0.24 × 6000 − 0.20 × 5000 = 440 minor units of sales per member.
    p_treated, p_holdout, mean_treated, mean_holdout = 0.24, 0.20, 6000.0, 5000.0
    true_conversion = p_treated - p_holdout
    true_sales = p_treated * mean_treated - p_holdout * mean_holdout
    seeds = 200
    covered_conversion = covered_sales = 0
    for seed in range(seeds):
        rng = random.Random(seed)
        treated = _simulate(rng, 1800, p_treated, mean_treated)
        holdout = _simulate(rng, 200, p_holdout, mean_holdout)  # a 10% holdout
        found = lift("broadcast", treated, holdout)
        assert found.conversion is not None and found.sales is not None
        covered_conversion += found.conversion.covers(true_conversion)
        covered_sales += found.sales.covers(true_sales)
    # Binomial(200, 0.95): mean 190, standard deviation 3.1; ±3 of them.
    tolerance = 3 * math.sqrt(seeds * 0.95 * 0.05)
    assert abs(covered_conversion - 0.95 * seeds) <= tolerance, covered_conversion
    assert abs(covered_sales - 0.95 * seeds) <= tolerance, covered_sales


def test_no_lift_is_found_where_there_is_none_and_a_real_one_is() -> None:
    rng = random.Random(3)  # a seed where the null's interval covers zero, as 95% of them do
    same = lift("birthday", _simulate(rng, 5000, 0.2, 5000), _simulate(rng, 5000, 0.2, 5000))
    assert same.conversion is not None and same.conversion.covers(0)
    big = lift("birthday", _simulate(rng, 5000, 0.3, 5000), _simulate(rng, 5000, 0.2, 5000))
    assert big.conversion is not None and big.conversion.sign == 1 and big.sales is not None and big.sales.sign == 1


def test_groups_too_small_to_tell() -> None:
    small = lift("winback", Group(500, 100, 1e5, 1e8), Group(MINIMUM - 1, 5, 1e3, 1e6))
    assert small.too_small and small.conversion is None and small.sales is None
    assert lift("winback", Group(500, 100, 1e5, 1e8), Group(0, 0, 0, 0)).too_small
    assert conversion_difference(Group(0, 0, 0, 0), Group(5, 1, 0, 0)) is None
    assert sales_difference(Group(1, 1, 5, 25), Group(5, 1, 5, 25)) is None
    # Nobody bought in either group: the rates are known to be low, and the interval says so, around zero.
    none = lift("winback", Group(100, 0, 0, 0), Group(100, 0, 0, 0))
    assert none.conversion is not None and none.conversion.low < 0 < none.conversion.high


# --------------------------------------------------------------------------- stored draws and the report


async def _members(sessions: SessionFactory, count: int, *, joined: datetime = NOW - timedelta(days=400)) -> list[int]:
    async with sessions() as session:
        await begin_write(session)
        members = [
            Member(telegram_id=70_000 + i, chat_id=70_000 + i, code=f"H{i:05d}", joined_at=joined) for i in range(count)
        ]
        session.add_all(members)
        await session.commit()
        return [m.id or 0 for m in members]


async def test_a_broadcast_holdout_is_drawn_at_creation_and_gets_no_delivery(
    sessions: SessionFactory, program: Program
) -> None:
    ids = await _members(sessions, 400)
    async with sessions() as session:
        created = await broadcasts.create(
            session,
            program,
            created_by=1,
            content={"default": {"text": "Hi"}},
            segment=Segment(),
            now=NOW,
            holdout=0.1,
        )
    campaign = str(created.id)
    expected = {m for m in ids if coin("broadcast", campaign, m, 0.1)}
    async with sessions() as session:
        delivered = set((await session.execute(select(Delivery.member_id))).scalars())
        draws = {d.member_id: d.held_out for d in (await session.execute(select(HoldoutDraw))).scalars()}
        assert await holdouts.held_out_count(session, "broadcast", campaign) == len(expected)
    assert 20 <= len(expected) <= 60  # 10% of 400, within 3.3 standard deviations
    assert delivered == set(ids) - expected and created.total == 400 - len(expected) and created.holdout == 0.1
    assert draws == {m: m in expected for m in ids}  # every member's arm, stored before anything is sent
    # Without a holdout nothing is drawn.
    async with sessions() as session:
        plain = await broadcasts.create(
            session, program, created_by=1, content={"default": {"text": "Hi"}}, segment=Segment(), now=NOW
        )
        assert plain.total == 400
        assert await holdouts.held_out_count(session, "broadcast", str(plain.id)) == 0


@pytest.mark.parametrize("rotates", [False, True])
async def test_members_held_out_last_time_are_spared_only_if_the_program_says_so(
    sessions: SessionFactory, program: Program, rotates: bool
) -> None:
    program = program.model_copy(update={"analytics": AnalyticsRules(holdout_rotates=rotates)})
    await _members(sessions, 600)
    held: list[set[int]] = []
    for n in range(2):
        async with sessions() as session:
            created = await broadcasts.create(
                session,
                program,
                created_by=1,
                content={"default": {"text": "Hi"}},
                segment=Segment(),
                now=NOW + timedelta(days=n),
                holdout=0.5,
            )
            held.append(
                set(
                    (
                        await session.execute(
                            select(HoldoutDraw.member_id).where(
                                HoldoutDraw.campaign == str(created.id), HoldoutDraw.held_out
                            )
                        )
                    ).scalars()
                )
            )
    if rotates:
        assert not held[0] & held[1]
    else:
        assert len(held[0] & held[1]) > 100  # independent draws: about a quarter of 600


async def test_the_report_computes_what_a_plain_computation_of_the_draws_gives(
    sessions: SessionFactory, program: Program
) -> None:
    rng = random.Random(5)
    ids = await _members(sessions, 120)
    period = Period("30d", NOW - timedelta(days=30), NOW)
    days = 14
    window = timedelta(days=days)
    draws: list[HoldoutDraw] = []
    purchases: list[Purchase] = []
    for kind in ("broadcast", "birthday"):
        for campaign in range(3):
            starts = NOW - timedelta(days=rng.randint(0, 40), hours=rng.randint(0, 23))
            for m in rng.sample(ids, 70):
                draws.append(
                    HoldoutDraw(
                        kind=kind,
                        campaign=f"c{campaign}",
                        member_id=m,
                        held_out=rng.random() < 0.4,
                        starts_at=starts,
                        drawn_at=starts,
                    )
                )
    for n in range(900):
        amount = rng.randint(100, 20_000)
        purchases.append(
            Purchase(
                member_id=rng.choice(ids),
                source="receipt",
                external_id=f"L{n}",
                amount_minor=amount,
                refunded_minor=rng.choice([0, 0, 0, amount, amount // 3]),
                currency="CNY",
                occurred_at=NOW - timedelta(days=rng.uniform(0, 60)),
            )
        )
    async with sessions() as session:
        await begin_write(session)
        session.add_all(draws + purchases)
        await session.commit()
        found = {f.kind: f for f in await metrics.lifts(session, period, days)}

    def plain(kind: str, held_out: bool) -> Group:
        members = buyers = 0
        total = squares = 0.0
        for d in draws:
            if d.kind != kind or d.held_out != held_out or not period.start <= d.starts_at < period.end:
                continue
            sales = sum(
                p.amount_minor - p.refunded_minor
                for p in purchases
                if p.member_id == d.member_id
                and p.refunded_minor < p.amount_minor
                and d.starts_at <= p.occurred_at < d.starts_at + window
            )
            members += 1
            buyers += sales > 0
            total += sales
            squares += sales * sales
        return Group(members, buyers, total, squares)

    assert set(found) == {"broadcast", "birthday"}
    for kind, got in found.items():
        treated, holdout = plain(kind, False), plain(kind, True)
        assert (got.treated.members, got.treated.buyers, got.holdout.members, got.holdout.buyers) == (
            treated.members,
            treated.buyers,
            holdout.members,
            holdout.buyers,
        )
        assert got.treated.sales == pytest.approx(treated.sales) and got.holdout.sales == pytest.approx(holdout.sales)
        assert got.treated.sales_squared == pytest.approx(treated.sales_squared)
        assert got.holdout.sales_squared == pytest.approx(holdout.sales_squared)
        expected = lift(kind, treated, holdout)
        assert expected.conversion is not None and got.conversion is not None
        assert got.conversion.low == pytest.approx(expected.conversion.low)
        assert got.sales is not None and expected.sales is not None
        assert got.sales.high == pytest.approx(expected.sales.high)
    # The report and `loyalty report` say it, and leave the observational look for kinds that kept a holdout.
    board = await metrics.dashboard(sessions, program, period, days)
    figures = {(section, figure): value for section, figure, value in rows(board, program)}
    assert figures[("lift vs holdout: birthday", "holdout: members")] == found["birthday"].holdout.members
    assert (
        figures[("lift vs holdout: broadcast", f"too small to tell (1: fewer than {MINIMUM} members in a group)")] == 0
    )
    assert not any(section.startswith("effect (observational") and "broadcast" in section for section, _ in figures)


# --------------------------------------------------------------------------- end to end: chat, console, scheduler


@pytest.fixture
async def app(harness: BotHarness) -> AsyncIterator[TestClient]:
    server = TestServer(make_http_app(services_with_app(harness), serve_updates=True))
    async with TestClient(server) as client:
        yield client


async def _draws(harness: BotHarness, kind: str) -> dict[int, bool]:
    async with harness.sessions() as session:
        found = (await session.execute(select(HoldoutDraw).where(col(HoldoutDraw.kind) == kind))).scalars()
        return {d.member_id: d.held_out for d in found}


async def _ids(harness: BotHarness, telegram_ids: range) -> dict[int, int]:
    """member id → telegram id."""
    out = {}
    for tid in telegram_ids:
        member = await harness.member(tid)
        assert member is not None and member.id is not None
        out[member.id] = tid
    return out


async def test_a_broadcast_holdout_from_the_chat_and_the_console_and_its_lift_in_stats_and_the_dashboard(
    harness: BotHarness, app: TestClient
) -> None:
    people = range(2001, 2013)
    for tid in people:
        await harness.send(harness.user(tid, f"M{tid}"), "/start")
    ids = await _ids(harness, people)
    admin = harness.user(ADMIN_ID, "Boss")
    await harness.send(admin, "/broadcast")
    await harness.send(admin, "Double points this Friday!")
    await harness.press(admin, "Next: choose members ▶")
    calls = await harness.send(admin, "holdout=lots")
    assert "is not a holdout share" in harness.texts(calls)[-1] and "Nothing was changed" in harness.texts(calls)[-1]
    await harness.send(admin, "holdout=50%")
    assert "Holdout: a random 50% of them get nothing" in (harness.tg.last_text(ADMIN_ID) or "")
    await harness.press(admin, "🚀 Send now")
    task = harness.dp["broadcaster"].task
    assert task is not None
    await asyncio.wait_for(task, 30)
    held = {ids[m] for m, out in (await _draws(harness, "broadcast")).items() if out}
    assert held == {ids[m] for m in ids if coin("broadcast", "1", m, 0.5)} and 0 < len(held) < 12
    for tid in people:  # the holdout is never told
        got = [m for m in harness.tg.messages(tid) if "Friday" in str(m.get("text"))]
        assert len(got) == (0 if tid in held else 1), tid

    listed = harness.texts(await harness.send(admin, "/broadcasts"))[-1]
    assert "#1 done · sent " in listed and "· holdout 50%" in listed
    harness.clock.advance(minutes=5)
    calls = await harness.send(admin, "/stats 7d")
    [card] = [c.params["text"] for c in calls if c.method == "sendMessage"]
    assert "Broadcasts, against a randomized holdout (purchases within 14 days):" in card
    assert f"Holdout: {len(held)} · bought 0.0%" in card and "Too few members to tell yet" in card

    headers = auth(harness, ADMIN_ID, first_name="Ada")
    body = {"key": "create-0123456789", "versions": {"default": {"text": "Friday again"}}, "holdout": "70%"}
    refused = await app.post("/app/api/console/broadcast/create", json=body, headers=headers)
    assert refused.status == 400 and (await refused.json())["error"]["code"] == "invalid_holdout"
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Broadcast))).scalar_one() == 1
    created = await app.post("/app/api/console/broadcast/create", json=body | {"holdout": "50%"}, headers=headers)
    assert created.status == 201, await created.text()
    second = {m for m in ids if coin("broadcast", "2", m, 0.5)}
    assert (await created.json())["total"] == 12 - len(second)
    async with harness.sessions() as session:
        stored = await session.get(Broadcast, 2)
        assert stored is not None and stored.holdout == 0.5
    listed = await (await app.get("/app/api/console/broadcasts", headers=headers)).json()
    assert [b["holdout"] for b in listed["broadcasts"]][:2] == ["holdout 50%", "holdout 50%"]  # newest first
    detail = await app.get("/app/view/console/broadcast?id=2", headers=headers)
    assert "🎲 holdout 50%" in await detail.text()

    harness.clock.advance(minutes=20)  # past the snapshot's age
    board = await app.get("/app/api/console/dashboard", params={"period": "7d"}, headers=headers)
    assert board.status == 200, await board.text()
    [effect] = (await board.json())["effects"]
    assert effect["kind"] == "broadcast" and effect["randomized"] is True
    assert any("Too few members to tell yet" in line for line in effect["lines"])
    assert any(f"Holdout: {len(held) + len(second)} ·" in line for line in effect["lines"])
    page = await app.get("/app/view/console/broadcast/new", headers=headers)
    assert page.status == 200 and 'name="holdout"' in await page.text()


async def test_birthday_holdout_gets_no_greeting_and_no_gift(harness: BotHarness) -> None:
    program = harness.services.program
    harness.services.programs.current = program.model_copy(
        update={"birthday": BirthdayRules(hour=9, bonus=10, holdout=Decimal("0.5"))}
    )
    people = range(3001, 3009)
    for tid in people:
        await harness.send(harness.user(tid, f"B{tid}"), "/start")
        member = await harness.member(tid)
        assert member is not None and member.id is not None
        async with harness.sessions() as session:
            await set_birthday(session, harness.services.program, member.id, Birthday(11, 23), harness.clock())
    ids = await _ids(harness, people)
    before = {tid: (await harness.member(tid)).points for tid in people}  # type: ignore[union-attr]
    args = (harness.bot, harness.sessions, harness.services.program, harness.dp["i18n"])
    at = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    sent = await reminders.send_birthday_offers(*args, at)  # type: ignore[arg-type]
    draws = await _draws(harness, "birthday")
    held = {ids[m] for m, out in draws.items() if out}
    assert set(draws) == set(ids) and held == {ids[m] for m in ids if coin("birthday", "2026", m, 0.5)}
    assert sent == 8 - len(held) and 0 < len(held) < 8
    for tid in people:
        greeted = [t for t in harness.texts(harness.tg.calls, tid) if "Happy birthday" in t]
        points = (await harness.member(tid)).points  # type: ignore[union-attr]
        assert (len(greeted), points - before[tid]) == ((0, 0) if tid in held else (1, 10)), tid
    # Later runs decide the same and send nothing more.
    assert await reminders.send_birthday_offers(*args, at + timedelta(hours=1)) == 0  # type: ignore[arg-type]
    assert await _draws(harness, "birthday") == draws


async def test_winback_holdout_gets_no_nudge_for_the_lapse(harness: BotHarness) -> None:
    program = harness.services.program
    harness.services.programs.current = program.model_copy(
        update={"winback": WinbackRules(days=30, cooldown_days=14, max_nudges=2, bonus=50, holdout=Decimal("0.5"))}
    )
    start = harness.clock()
    people = range(4001, 4009)
    for tid in people:
        await harness.send(harness.user(tid, f"W{tid}"), "/start")
    ids = await _ids(harness, people)
    args = (harness.bot, harness.sessions, harness.services.program, harness.dp["i18n"])
    first = await reminders.send_winback_nudges(*args, start + timedelta(days=31))  # type: ignore[arg-type]
    draws = await _draws(harness, "winback")
    held = {ids[m] for m, out in draws.items() if out}
    assert set(draws) == set(ids) and first == 8 - len(held) and 0 < len(held) < 8
    second = await reminders.send_winback_nudges(*args, start + timedelta(days=46))  # type: ignore[arg-type]
    assert second == 8 - len(held)
    for tid in people:
        nudges = [t for t in harness.texts(harness.tg.calls, tid) if "We miss you" in t]
        assert len(nudges) == (0 if tid in held else 2), tid
    assert await _draws(harness, "winback") == draws  # drawn once per lapse
