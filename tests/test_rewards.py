"""Rewards in loyalty/: catalog sync, redemption (replays, limits, stock, concurrency), coupons at the till."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from loyalty import ledger, rewards
from loyalty.ledger import InsufficientPoints, Kind
from loyalty.members import join
from loyalty.program import Program, parse_program
from loyalty.rewards import (
    CouponProblem,
    RewardUnavailable,
    Unavailable,
    catalog,
    coupons_of,
    normalize_coupon_code,
    redeem,
    set_active,
    sync_catalog,
    use_coupon,
)
from storage.database import SessionFactory
from storage.models import Coupon, LedgerEntry, Member, Reward

NOW = datetime(2026, 11, 22, 4, tzinfo=UTC)
PROGRAM = parse_program("""
name = "Test Cafe"
[[rewards]]
key = "latte"
title = "Free latte"
cost = 100
[[rewards]]
key = "mug"
title = "Mug"
cost = 100
stock = 2
per_member_limit = 1
validity_days = 7
""")


async def _setup(sessions: SessionFactory, points: int, program: Program = PROGRAM) -> tuple[int, dict[str, int]]:
    async with sessions() as session:
        await sync_catalog(session, program)
        member = (
            await join(
                session,
                program,
                telegram_id=1,
                chat_id=1,
                first_name="Ann",
                last_name=None,
                username=None,
                language_code="en",
                payload=None,
                now=NOW,
            )
        ).member
        assert member.id is not None
        if points:
            await ledger.credit(session, member.id, points, kind=Kind.ADJUST, now=NOW, expires_at=None)
            await session.commit()
        rewards = {r.key: r.id for r in await catalog(session) if r.id is not None}
        return member.id, rewards


async def _points(sessions: SessionFactory, member_id: int) -> int:
    async with sessions() as session:
        return int((await session.execute(select(Member.points).where(Member.id == member_id))).scalar_one())


async def test_fifty_concurrent_confirmations_against_a_balance_for_three(sessions: SessionFactory) -> None:
    member_id, rewards = await _setup(sessions, 300)

    async def confirm(n: int) -> str:
        async with sessions() as session:
            try:
                await redeem(session, member_id=member_id, reward_id=rewards["latte"], key=f"k{n}", now=NOW)
                return "ok"
            except InsufficientPoints:
                return "short"

    results = await asyncio.gather(*(confirm(n) for n in range(50)))
    assert results.count("ok") == 3 and results.count("short") == 47
    assert await _points(sessions, member_id) == 0
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Coupon))).scalar_one() == 3
        total = (await session.execute(select(func.sum(LedgerEntry.points)))).scalar_one()
        remaining = (await session.execute(select(func.sum(LedgerEntry.remaining)))).scalar_one()
    assert total == remaining == 0


async def test_a_replayed_confirmation_spends_once(sessions: SessionFactory) -> None:
    member_id, rewards = await _setup(sessions, 250)
    results = await asyncio.gather(*(_redeem(sessions, member_id, rewards["latte"], "same-message") for _ in range(5)))
    assert sum(r.created for r in results) == 1
    assert len({r.coupon.code for r in results}) == 1
    assert await _points(sessions, member_id) == 150


async def _redeem(sessions: SessionFactory, member_id: int, reward_id: int, key: str):
    async with sessions() as session:
        return await redeem(session, member_id=member_id, reward_id=reward_id, key=key, now=NOW)


async def test_limits_stock_and_disabled_rewards_refuse_and_spend_nothing(sessions: SessionFactory) -> None:
    member_id, rewards = await _setup(sessions, 1000)
    await _redeem(sessions, member_id, rewards["mug"], "a")
    with pytest.raises(RewardUnavailable) as refused:
        await _redeem(sessions, member_id, rewards["mug"], "b")
    assert refused.value.reason is Unavailable.LIMIT_REACHED
    async with sessions() as session:
        other = (
            await join(
                session,
                PROGRAM,
                telegram_id=2,
                chat_id=2,
                first_name="Bob",
                last_name=None,
                username=None,
                language_code="en",
                payload=None,
                now=NOW,
            )
        ).member
        assert other.id is not None
        await ledger.credit(session, other.id, 500, kind=Kind.ADJUST, now=NOW, expires_at=None)
        await session.commit()
    await _redeem(sessions, other.id, rewards["mug"], "c")
    async with sessions() as session:
        third = (
            await join(
                session,
                PROGRAM,
                telegram_id=3,
                chat_id=3,
                first_name="Cy",
                last_name=None,
                username=None,
                language_code="en",
                payload=None,
                now=NOW,
            )
        ).member
        assert third.id is not None
        await ledger.credit(session, third.id, 500, kind=Kind.ADJUST, now=NOW, expires_at=None)
        await session.commit()
    with pytest.raises(RewardUnavailable) as refused:
        await _redeem(sessions, third.id, rewards["mug"], "d")
    assert refused.value.reason is Unavailable.OUT_OF_STOCK
    assert await _points(sessions, third.id) == 500
    async with sessions() as session:
        await set_active(session, rewards["latte"], False)
    with pytest.raises(RewardUnavailable) as refused:
        await _redeem(sessions, third.id, rewards["latte"], "e")
    assert refused.value.reason is Unavailable.DISABLED
    assert await _points(sessions, member_id) == 900


async def test_coupons_are_used_once_and_expire(sessions: SessionFactory) -> None:
    member_id, rewards = await _setup(sessions, 300)
    mug = await _redeem(sessions, member_id, rewards["mug"], "m")
    latte = await _redeem(sessions, member_id, rewards["latte"], "l")
    async with sessions() as session:
        assert [c.code for c, _ in await coupons_of(session, member_id, NOW)] == [mug.coupon.code, latte.coupon.code]
        first = await use_coupon(session, latte.coupon.code, cashier_id=9, now=NOW)
        second = await use_coupon(session, latte.coupon.code, cashier_id=9, now=NOW + timedelta(hours=1))
        expired = await use_coupon(session, mug.coupon.code, cashier_id=9, now=NOW + timedelta(days=8))
        unknown = await use_coupon(session, "ZZZZZZZZZZ", cashier_id=9, now=NOW)
        assert [c.code for c, _ in await coupons_of(session, member_id, NOW)] == [mug.coupon.code]
    assert first.problem is None
    assert second.problem is CouponProblem.USED and second.coupon and second.coupon.used_at == NOW
    assert expired.problem is CouponProblem.EXPIRED and unknown.problem is CouponProblem.UNKNOWN


async def test_catalog_follows_the_program_file(sessions: SessionFactory) -> None:
    await _setup(sessions, 0)
    smaller = parse_program('name = "T"\n[[rewards]]\nkey = "latte"\ntitle = "Latte"\ncost = 120\n')
    async with sessions() as session:
        await sync_catalog(session, smaller)
        active = {r.key: r.cost for r in await catalog(session)}
        everything = {r.key for r in await catalog(session, include_disabled=True)}
    assert active == {"latte": 120} and everything == {"latte", "mug"}
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Reward))).scalar_one() == 2


async def test_workers_starting_together_on_a_fresh_database_both_sync_the_catalog(
    sessions: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sessions() as session:
        await sync_catalog(session, PROGRAM)  # the first worker made the rewards
    real = rewards._existing_rewards
    reads: list[int] = []

    async def read_before_the_first_committed(session: Any) -> dict[str, Reward]:
        reads.append(1)
        return {} if len(reads) == 1 else await real(session)

    monkeypatch.setattr(rewards, "_existing_rewards", read_before_the_first_committed)
    async with sessions() as session:
        await sync_catalog(session, PROGRAM)  # the second read an empty catalog, and its inserts collide
    assert len(reads) == 2, "it tried again"
    async with sessions() as session:
        assert sorted(r.key for r in await catalog(session)) == ["latte", "mug"]


def test_coupon_codes_as_typed() -> None:
    assert normalize_coupon_code(" abcd-efgh 23 ") == "ABCDEFGH23"
    assert normalize_coupon_code("ABCDEFGH2") is None
    assert normalize_coupon_code("ABCDEFGH20") is None  # 0 is not in the alphabet
    assert normalize_coupon_code("<b>x</b>") is None


async def test_per_item_stamps_overflow_into_new_cards(sessions: SessionFactory) -> None:
    from decimal import Decimal

    from loyalty.purchases import record_purchase

    program = parse_program("""
name = "Cafe"
[[rewards]]
key = "latte"
title = "Free latte"
cost = 100
[[punch_cards]]
key = "beans"
name = "Beans card"
category = "beans"
stamps = 4
per = "item"
reward = "latte"
""")
    member_id, _ = await _setup(sessions, 0, program)
    async with sessions() as session:
        result = await record_purchase(
            session,
            program,
            member_id=member_id,
            amount=Decimal("50"),
            source="t",
            external_id="x",
            now=NOW,
            category="beans",
            items=9,
        )
    [card] = result.cards
    assert (card.added, card.filled, card.stamps, len(card.coupons)) == (9, 2, 1, 2)
    async with sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Coupon))).scalar_one() == 2
