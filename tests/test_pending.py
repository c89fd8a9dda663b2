"""Pending points ([earn] pending_days): held for the return window, shown but not spendable, cancelled by a refund
inside it without a debt, released by the scheduler once, counted toward tiers when available (or at once with
[tiers] count_pending), expiring from their release; the ledger's invariants with pending points, at random."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from loyalty import pending
from loyalty.ledger import InsufficientPoints, Kind, debit, expire_due
from loyalty.members import join
from loyalty.program import Program, load_program, parse_program
from loyalty.purchases import record_purchase
from loyalty.refunds import refund
from scheduler.jobs import jobs
from storage.database import SessionFactory, make_engine, make_session_factory
from storage.models import LedgerEntry, Member, Purchase
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness
from tests.test_ledger import _check_invariants, clear_all

WINDOW = 14


@pytest.fixture
def program() -> Program:
    base = load_program()
    return base.model_copy(update={"earn": base.earn.model_copy(update={"pending_days": WINDOW})})


async def _pending_state(harness: BotHarness) -> tuple[int, int, int]:
    """(spendable, pending on the member row, pending summed over purchases), with the invariants checked."""
    member = await harness.member(1001)
    assert member is not None and member.id is not None
    async with harness.sessions() as session:
        summed = await pending.total_pending(session, member.id)
    await _check_invariants(harness.sessions, member.id)
    assert member.pending_points == summed
    return member.points, member.pending_points, summed


async def _release(harness: BotHarness) -> int:
    [job] = [job for job in jobs(harness.services) if job.name == "release-pending"]
    return await job.run(harness.clock())


async def test_a_purchase_waits_for_the_return_window_then_is_spendable_once(harness: BotHarness) -> None:
    ann, cashier = harness.user(1001, "Ann"), harness.user(CASHIER_ID, "Cass")
    await harness.send(ann, "/start")  # 50 welcome points, at once
    calls = await harness.send(cashier, "/purchase 1001 120 tea R-1")
    [answer] = harness.texts(calls, CASHIER_ID)
    assert "+120 points, balance 50" in answer and "Pending until Dec 6, 2026 (the return window)" in answer
    [notice] = harness.texts(calls, 1001)
    assert "You earned <b>120</b> points" in notice
    assert "They are pending until Dec 6, 2026: yours to spend once the return window ends." in notice
    assert "Your balance: 50 points." in notice
    assert await _pending_state(harness) == (50, 120, 120)
    balance = harness.texts(await harness.send(ann, "/balance"), 1001)[0]
    assert "<b>50</b> points" in balance and "🕓 Pending: +120 points, available on Dec 6, 2026." in balance

    member = await harness.member(1001)
    assert member is not None and member.id is not None
    async with harness.sessions() as session:  # pending points cannot be spent
        with pytest.raises(InsufficientPoints):
            await debit(session, member.id, 60, kind=Kind.SPEND, now=harness.clock())
        await session.rollback()

    harness.clock.advance(days=WINDOW - 1)
    assert await _release(harness) == 0  # not yet
    harness.clock.advance(days=1)
    assert await _release(harness) == 120
    assert await _release(harness) == 0  # once
    assert await _pending_state(harness) == (170, 0, 0)
    balance = harness.texts(await harness.send(ann, "/balance"), 1001)[0]
    assert "<b>170</b> points" in balance and "Pending" not in balance
    async with harness.sessions() as session:  # the lot expires a year after it became available, not earlier
        lot = (await session.execute(select(LedgerEntry).where(LedgerEntry.purchase_id.is_not(None)))).scalar_one()  # type: ignore[union-attr]
    assert lot.created_at == harness.clock() and lot.expires_at == harness.clock() + timedelta(days=365)


async def test_a_refund_inside_the_window_cancels_pending_points_without_a_debt(harness: BotHarness) -> None:
    ann, cashier = harness.user(1001, "Ann"), harness.user(CASHIER_ID, "Cass")
    await harness.send(ann, "/start")
    await harness.send(cashier, "/purchase 1001 100 tea R-1")
    await harness.send(cashier, "/purchase 1001 60 tea R-2")
    reply = harness.texts(await harness.send(cashier, "/refund R-1 40"), CASHIER_ID)[0]
    assert "−40 points" in reply and "balance is 50" in reply
    assert await _pending_state(harness) == (50, 120, 120)
    balance = harness.texts(await harness.send(ann, "/balance"), 1001)[0]
    assert "🕓 Pending: +120 points, available on Dec 6, 2026." in balance
    await harness.send(cashier, "/refund R-1")  # the rest of R-1: all its pending points gone, still no debt
    assert await _pending_state(harness) == (50, 60, 60)
    harness.clock.advance(days=WINDOW)
    assert await _release(harness) == 60  # only R-2 is left to release
    assert await _pending_state(harness) == (110, 0, 0)
    # After the window a refund takes back from the balance, as without one.
    reply = harness.texts(await harness.send(cashier, "/refund R-2"), CASHIER_ID)[0]
    assert "−60 points" in reply and "balance is 50" in reply
    assert await _pending_state(harness) == (50, 0, 0)


async def test_pending_points_due_on_several_days_are_told_apart(harness: BotHarness) -> None:
    ann, cashier = harness.user(1001, "Ann"), harness.user(CASHIER_ID, "Cass")
    await harness.send(ann, "/start")
    await harness.send(cashier, "/purchase 1001 30 tea R-1")
    harness.clock.advance(days=2)
    await harness.send(cashier, "/purchase 1001 70 tea R-2")
    balance = harness.texts(await harness.send(ann, "/balance"), 1001)[0]
    assert "🕓 Pending: +100 points; the first +30 available on Dec 6, 2026." in balance


async def test_the_api_and_the_app_show_pending_points(harness: BotHarness) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from tests.test_api import AUTH, TOKEN
    from tests.test_http import deps_of
    from tests.test_miniapp import APP, auth
    from web.server import make_http_app

    await harness.send(harness.user(1001, "Ann"), "/start")
    services = deps_of(
        harness, api_tokens=frozenset({TOKEN}), webapp_url=APP, admin_ids=harness.services.settings.admin_ids
    )
    async with TestClient(TestServer(make_http_app(services, serve_updates=True))) as client:
        member = await harness.member(1001)
        assert member is not None
        body = {"member": member.code, "amount": "80", "currency": "CNY", "external_id": "T-1"}
        made = await client.post("/api/v1/purchases", json=body, headers=AUTH)
        assert made.status == 201, await made.text()
        out = await made.json()
        assert out["points"] == 80 and out["pending_points"] == 80 and out["balance"] == 50
        assert out["available_at"].startswith("2026-12-06T04:00:00")
        looked_up = await (await client.get(f"/api/v1/members/{member.code}", headers=AUTH)).json()
        assert looked_up["points"] == 50 and looked_up["pending_points"] == 80
        home = await (await client.get("/app/api/home", headers=auth(harness, 1001))).json()
        assert home["points"] == 50 and home["pending_points"] == 80
        assert home["pending"] == "🕓 Pending: +80 points, available on Dec 6, 2026."
        page = await (await client.get("/app/view/home", headers=auth(harness, 1001))).text()
        assert "🕓 Pending: +80 points, available on Dec 6, 2026." in page
        admin = auth(harness, ADMIN_ID, first_name="Ada")
        file = await (await client.get(f"/app/api/console/member?ref={member.code}", headers=admin)).json()
        assert file["points"] == 50 and file["pending_points"] == 80
        assert [p["pending_until"] for p in file["purchases"]] == ["Dec 6, 2026"]


async def test_pending_points_speak_chinese(harness: BotHarness) -> None:
    ann, cashier = harness.user(1001, "Ann", language_code="zh-hans"), harness.user(CASHIER_ID, "Cass")
    await harness.send(ann, "/start")
    calls = await harness.send(cashier, "/purchase 1001 120 tea R-1")
    [notice] = harness.texts(calls, 1001)
    assert "退货期" in notice
    balance = harness.texts(await harness.send(ann, "/balance"), 1001)[0]
    assert "待生效" in balance and "2026年12月6日" in balance


# --- tiers: a purchase inside its window counts only once available, unless [tiers] count_pending ---

TIERS = """
name = "Cafe"
[earn]
pending_days = 7
[tiers]
{count}
[[tiers.levels]]
name = "Silver"
enter = "500"
multiplier = "1.5"
"""
T0 = datetime(2026, 1, 10, 4, tzinfo=UTC)


async def _joined(sessions: SessionFactory, program: Program) -> int:
    async with sessions() as session:
        done = await join(
            session, program, telegram_id=1, chat_id=1, first_name="A", last_name=None, username=None,
            language_code="en", payload=None, now=T0,
        )  # fmt: skip
    assert done.member.id is not None
    return done.member.id


@pytest.mark.parametrize("count_pending", [False, True])
async def test_tiers_count_a_pending_purchase_when_the_program_says(
    sessions: SessionFactory, count_pending: bool
) -> None:
    program = parse_program(TIERS.format(count="count_pending = true" if count_pending else ""))
    member_id = await _joined(sessions, program)
    async with sessions() as session:
        result = await record_purchase(
            session, program, member_id=member_id, amount=Decimal(600), source="receipt", external_id="R-1", now=T0
        )
    assert (result.promoted is not None) is count_pending
    async with sessions() as session:
        released = await pending.release_due(session, program, T0 + timedelta(days=7))
    assert [r.points for r in released] == [600]
    assert (released[0].promoted is not None) is not count_pending  # promoted now, if not at once
    async with sessions() as session:
        member = await session.get(Member, member_id)
    assert member is not None and member.tier == "Silver"


async def test_a_purchase_refunded_inside_its_window_never_lifts_a_tier(sessions: SessionFactory) -> None:
    program = parse_program(TIERS.format(count=""))
    member_id = await _joined(sessions, program)
    async with sessions() as session:
        bought = await record_purchase(
            session, program, member_id=member_id, amount=Decimal(600), source="receipt", external_id="R-1", now=T0
        )
        assert bought.purchase.id is not None
        await refund(
            session, program, purchase_id=bought.purchase.id, amount=None, key="k", actor_id=9, now=T0 + timedelta(1)
        )
        assert await pending.release_due(session, program, T0 + timedelta(days=8)) == []
        member = await session.get(Member, member_id)
    assert member is not None and member.tier is None and member.points == 0 and member.pending_points == 0


# --- the invariants at random: purchases, refunds, spends and time passing, with a return window ---

RANDOM = parse_program("""
name = "Cafe"
[earn]
pending_days = 5
[expiry]
policy = "days"
days = 20
""")
operation = st.one_of(
    st.tuples(st.just("buy"), st.integers(1, 300)),
    st.tuples(st.just("refund"), st.integers(0, 40)),  # which purchase; refunds a third, or the rest
    st.tuples(st.just("spend"), st.integers(1, 400)),
    st.tuples(st.just("wait"), st.integers(1, 9)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_random_purchases_refunds_and_releases_keep_pending_points_right(database_url: str, ops) -> None:
    async def scenario() -> None:
        engine = make_engine(database_url)
        try:
            await run(make_session_factory(engine))
        finally:
            await engine.dispose()

    async def run(sessions: SessionFactory) -> None:
        await clear_all(sessions)
        member_id = await _joined(sessions, RANDOM)
        now, receipts = T0, 0
        # The model: per purchase, the points it earned and what refunds took back before and after release.
        taken: dict[int, int] = {}
        released_points = 0
        for op, value in ops:
            async with sessions() as session:
                if op == "buy":
                    receipts += 1
                    done = await record_purchase(
                        session, RANDOM, member_id=member_id, amount=Decimal(value), source="receipt",
                        external_id=f"R-{receipts}", now=now,
                    )  # fmt: skip
                    assert done.purchase.id is not None and done.purchase.pending_points == value
                    taken[done.purchase.id] = 0
                elif op == "refund" and taken:
                    purchase_id = sorted(taken)[value % len(taken)]
                    purchase = await session.get(Purchase, purchase_id)
                    assert purchase is not None
                    left = purchase.amount_minor - purchase.refunded_minor
                    if left:
                        part = None if value % 2 else Decimal(max(left // 3, 1)).scaleb(-2)
                        await refund(
                            session, RANDOM, purchase_id=purchase_id, amount=part, key=f"k{value}-{now}-{left}",
                            actor_id=9, now=now,
                        )  # fmt: skip
                elif op == "spend":
                    try:
                        await debit(session, member_id, value, kind=Kind.SPEND, now=now)
                        await session.commit()
                    except InsufficientPoints:
                        await session.rollback()
                elif op == "wait":
                    now += timedelta(days=value)
                    released_points += sum(r.points for r in await pending.release_due(session, RANDOM, now))
                    await expire_due(session, now)
            await _check_invariants(sessions, member_id)
            async with sessions() as session:
                member = await session.get(Member, member_id)
                purchases = list((await session.execute(select(Purchase))).scalars())
                lots = (
                    await session.execute(
                        select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(LedgerEntry.kind == Kind.PURCHASE)
                    )
                ).scalar_one()
            assert member is not None
            assert member.pending_points == sum(p.pending_points for p in purchases)
            assert released_points == lots  # a purchase's lot is made once, at its release, with what was left
            for p in purchases:
                earned_back = p.points * p.refunded_minor // p.amount_minor
                assert 0 <= p.pending_points <= p.points - earned_back
                assert p.available_at is not None
                if p.available_at > now:  # inside the window everything not refunded is pending
                    assert p.pending_points == p.points - earned_back
                else:  # released by the wait that passed its end
                    assert p.pending_points == 0
            # Without spends nothing can become a debt: refunds inside a window only cancel pending points.
            if not any(op == "spend" for op, _ in ops):
                assert member.points >= 0

    asyncio.run(scenario())
