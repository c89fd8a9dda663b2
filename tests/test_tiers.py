"""Tiers with a driven clock: promotion at once, multiplier, progress, warning then demotion at review."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from loyalty.members import join
from loyalty.program import parse_program
from loyalty.purchases import record_purchase
from loyalty.refunds import refund
from loyalty.tiers import months_before, progress, qualifying, review_tiers
from storage.database import SessionFactory
from storage.models import Member
from tests.harness import CASHIER_ID, BotHarness

PROGRAM = parse_program("""
name = "Cafe"
[tiers]
window_months = 12
warning_days = 14
[[tiers.levels]]
name = "Silver"
enter = "500"
keep = "400"
multiplier = "1.5"
[[tiers.levels]]
name = "Gold"
enter = "2000"
multiplier = "2"
""")
T0 = datetime(2026, 1, 10, 4, tzinfo=UTC)


async def _member(sessions: SessionFactory) -> int:
    async with sessions() as session:
        member = (
            await join(
                session,
                PROGRAM,
                telegram_id=1,
                chat_id=1,
                first_name="A",
                last_name=None,
                username=None,
                language_code="en",
                payload=None,
                now=T0,
            )
        ).member
        assert member.id is not None
        return member.id


async def _buy(sessions: SessionFactory, member_id: int, amount: str, receipt: str, at: datetime):
    async with sessions() as session:
        return await record_purchase(
            session, PROGRAM, member_id=member_id, amount=Decimal(amount), source="receipt", external_id=receipt, now=at
        )


async def _tier(sessions: SessionFactory, member_id: int) -> str | None:
    async with sessions() as session:
        return (await session.execute(select(Member.tier).where(Member.id == member_id))).scalar_one()


async def test_promotion_at_once_and_the_multiplier_from_the_next_purchase(sessions: SessionFactory) -> None:
    member_id = await _member(sessions)
    first = await _buy(sessions, member_id, "300", "a", T0)
    assert first.promoted is None and first.points == 300
    crossing = await _buy(sessions, member_id, "250", "b", T0 + timedelta(days=1))
    assert crossing.promoted is not None and crossing.promoted.name == "Silver"
    assert crossing.points == 250  # earned at the tier the member had when buying
    assert (await _buy(sessions, member_id, "100", "c", T0 + timedelta(days=2))).points == 150
    assert await _tier(sessions, member_id) == "Silver"
    async with sessions() as session:
        ahead = await progress(session, PROGRAM, member_id, "Silver", T0 + timedelta(days=3))
    assert ahead.next is not None and ahead.next.name == "Gold" and ahead.missing == Decimal("1350")
    assert ahead.by == datetime(2027, 1, 10, 4, tzinfo=UTC)


async def test_demotion_only_at_review_after_a_warning(sessions: SessionFactory) -> None:
    member_id = await _member(sessions)
    await _buy(sessions, member_id, "600", "a", T0)
    assert await _tier(sessions, member_id) == "Silver"
    later = months_before(T0, -12) + timedelta(days=1)  # the purchase has left the window
    async with sessions() as session:
        assert await qualifying(session, PROGRAM, member_id, later) == 0
        review = await review_tiers(session, PROGRAM, later)
    assert [(m, level.name) for m, level, _short, _on in review.warned] == [(member_id, "Silver")]
    assert review.demoted == [] and await _tier(sessions, member_id) == "Silver"
    async with sessions() as session:
        again = await review_tiers(session, PROGRAM, later + timedelta(days=13))
    assert again.warned == [] and again.demoted == []  # warned once; not yet due
    async with sessions() as session:
        due = await review_tiers(session, PROGRAM, later + timedelta(days=14))
    assert [(m, old.name, new) for m, old, new in due.demoted] == [(member_id, "Silver", None)]
    assert await _tier(sessions, member_id) is None


async def test_climbing_back_clears_the_warning_and_refunds_reduce_spend(sessions: SessionFactory) -> None:
    member_id = await _member(sessions)
    bought = await _buy(sessions, member_id, "600", "a", T0)
    async with sessions() as session:
        purchase_id = bought.purchase.id
        assert purchase_id is not None
        await refund(session, PROGRAM, purchase_id=purchase_id, amount=Decimal("250"), key="r1", actor_id=9, now=T0)
        assert await qualifying(session, PROGRAM, member_id, T0) == Decimal("350")
        review = await review_tiers(session, PROGRAM, T0 + timedelta(days=1))
    assert len(review.warned) == 1
    await _buy(sessions, member_id, "100", "b", T0 + timedelta(days=2))  # 450 ≥ keep 400
    async with sessions() as session:
        cleared = await review_tiers(session, PROGRAM, T0 + timedelta(days=20))
        member = await session.get(Member, member_id)
    assert cleared.demoted == [] and member is not None and member.tier_warned_at is None


async def test_balance_shows_tier_and_progress(harness: BotHarness) -> None:
    await harness.send(harness.user(1001, "Ann"), "/start")
    [text] = harness.texts(await harness.send(harness.user(1001), "/balance"))
    assert "Spend CN¥500.00 more by" not in text and "Spend CN¥500.00 more to reach Silver." in text
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), "/purchase 1001 520 tea R-1")
    assert "Congratulations, you are now Silver! 1.25× points" in harness.texts(calls, 1001)[0]
    [text] = harness.texts(await harness.send(harness.user(1001), "/balance"))
    assert "Tier: <b>Silver</b>" in text and "Spend CN¥1,480.00 more by Nov 22, 2027 to reach Gold." in text


async def test_tier_perks_in_the_members_language(harness: BotHarness) -> None:
    wen = harness.user(1001, "Wen", language_code="zh-hant")
    await harness.send(wen, "/start")
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), "/purchase 1001 520 tea R-1")
    [notice] = harness.texts(calls, 1001)
    assert "銀卡" in notice and "1.25倍積分" in notice and "points" not in notice
    [text] = harness.texts(await harness.send(wen, "/balance"))
    assert "<b>銀卡</b> — 1.25倍積分" in text
