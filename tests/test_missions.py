"""Missions end to end: each goal reached, not reached, and reached then refunded (before payment: unpaid; after:
clawed back); paid once under replays and concurrent purchases; tier limits; /missions with progress bars."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from loyalty import missions
from loyalty.ledger import Kind
from loyalty.program import CheckinRules, MissionRule, Program, ReferralRules, load_program
from loyalty.purchases import record_purchase
from storage.models import Coupon, LedgerEntry, Member, MissionPayment
from tests.harness import CASHIER_ID, BotHarness

ANN, BOB = 1001, 1002


def _mission(key: str, goal: str, target: str, points: int = 30, **extra: Any) -> MissionRule:
    return MissionRule(
        key=key, name=key.title(), goal=goal, target=Decimal(target), period="month", points=points, **extra
    )  # type: ignore[arg-type]


MISSIONS = [
    _mission("visits", "purchases", "3", name_zh_hans="本月到店3次"),
    _mission("spender", "spend", "200", points=60),
    _mission("explorer", "categories", "2", points=0, reward="latte"),
    _mission("friend", "referrals", "1", points=100),
    _mission("streak", "checkin_streak", "3", points=40),
    _mission("gold-only", "purchases", "1", points=500, tiers=["Gold"]),
]


@pytest.fixture
def program() -> Program:
    return load_program().model_copy(
        update={
            "promotions": [],
            "missions": MISSIONS,
            "referrals": ReferralRules(friend_bonus=0, referrer_bonus=10, qualifying_amount=Decimal(20)),
            "checkin": CheckinRules(enabled=True, points=1, min_member_hours=0),
        }
    )


async def _join(harness: BotHarness, telegram_id: int = ANN, name: str = "Ann", payload: str = "") -> Member:
    await harness.send(harness.user(telegram_id, name), f"/start {payload}".strip())
    member = await harness.member(telegram_id)
    assert member is not None
    return member


async def _buy(harness: BotHarness, who: int, amount: str, receipt: str, category: str = "coffee") -> list[str]:
    cashier = harness.user(CASHIER_ID, "Cass")
    calls = await harness.send(cashier, f"/purchase {who} {amount} {category} {receipt}")
    return harness.texts(calls, who)


async def _refund(harness: BotHarness, receipt: str, amount: str = "") -> None:
    await harness.send(harness.user(CASHIER_ID, "Cass"), f"/refund {receipt} {amount}".strip())


async def _mission_points(harness: BotHarness, telegram_id: int = ANN) -> tuple[int, int]:
    """Points paid by missions, and taken back by refunds of missions; checks the ledger invariant."""
    async with harness.sessions() as session:
        member = (await session.execute(select(Member).where(Member.telegram_id == telegram_id))).scalar_one()
        paid = (
            await session.execute(
                select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
                    LedgerEntry.member_id == member.id, LedgerEntry.kind == Kind.MISSION
                )
            )
        ).scalar_one()
        taken = (
            await session.execute(
                select(func.coalesce(func.sum(LedgerEntry.points), 0)).where(
                    LedgerEntry.member_id == member.id,
                    LedgerEntry.reason.like("mission %"),  # type: ignore[attr-defined]
                )
            )
        ).scalar_one()
        ledger = (
            await session.execute(select(func.sum(LedgerEntry.points)).where(LedgerEntry.member_id == member.id))
        ).scalar_one()
    assert ledger == member.points, "ledger invariant"
    return int(paid), int(taken)


async def test_purchases_goal_paid_once_and_a_refund_after_payment_claws_it_back(harness: BotHarness) -> None:
    await _join(harness)
    await _buy(harness, ANN, "10", "R-1")
    await _buy(harness, ANN, "10", "R-2")
    assert await _mission_points(harness) == (0, 0)  # not reached
    texts = await _buy(harness, ANN, "10", "R-3")
    assert any("Mission complete: Visits (+30 points)" in t for t in texts)
    await _buy(harness, ANN, "10", "R-3")  # the same receipt again: a replay
    await _buy(harness, ANN, "10", "R-4")  # a fourth purchase: already paid this month
    assert await _mission_points(harness) == (30, 0)

    await _refund(harness, "R-4")  # still 3 purchases: nothing taken back
    assert await _mission_points(harness) == (30, 0)
    await _refund(harness, "R-3")  # 2 left: the mission's points go back
    assert await _mission_points(harness) == (30, -30)
    await _buy(harness, ANN, "10", "R-5")  # reached again: paid again
    assert await _mission_points(harness) == (60, -30)

    calls = await harness.send(harness.user(ANN), "/missions")
    text = harness.texts(calls, ANN)[0]
    assert "<b>Visits</b> · +30 points" in text and "▰▰▰▰▰▰▰▰▰▰ 3 / 3 · ✅ done" in text
    assert "Gold-Only" not in text  # for Gold members only
    assert "▰▰▰▰▰▱▱▱▱▱ 1 / 2" in text  # explorer: one category of two


async def test_a_refund_before_payment_leaves_the_goal_unpaid(harness: BotHarness) -> None:
    await _join(harness)
    await _buy(harness, ANN, "150", "S-1")
    await _refund(harness, "S-1", "100")  # 50 left
    await _buy(harness, ANN, "100", "S-2")  # 150 net: short of 200
    assert await _mission_points(harness) == (0, 0)
    texts = await _buy(harness, ANN, "50", "S-3")  # 200 net: reached
    assert any("Mission complete: Spender (+60 points)" in t for t in texts)
    await _refund(harness, "S-3", "0.01")  # 199.99: below the target after payment
    assert await _mission_points(harness) == (60 + 30, -60)  # three purchases still made: "visits" stays paid


async def test_categories_goal_pays_a_coupon_and_repeats_of_a_category_do_not_count(harness: BotHarness) -> None:
    await _join(harness)
    await _buy(harness, ANN, "10", "C-1", "coffee")
    await _buy(harness, ANN, "10", "C-2", "coffee")
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(MissionPayment))).scalar_one() == 0
    texts = await _buy(harness, ANN, "10", "C-3", "tea")
    assert any("Mission complete: Explorer (a coupon for Free latte)" in t and "Your coupon:" in t for t in texts)
    await _refund(harness, "C-3")  # the coupon is not taken back; the mission is marked undone
    await _buy(harness, ANN, "10", "C-4", "tea")  # reached again: no second coupon
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Coupon))).scalar_one() == 1


async def test_referrals_goal_paid_to_the_referrer_and_taken_back_when_the_friend_refunds(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _join(harness, BOB, "Bob", f"ref_{ann.code}")
    await _buy(harness, BOB, "10", "F-1")  # below the qualifying amount
    assert await _mission_points(harness) == (0, 0)
    await _buy(harness, BOB, "30", "F-2")
    assert await _mission_points(harness) == (100, 0)
    await _refund(harness, "F-2")
    assert await _mission_points(harness) == (100, -100)


async def test_checkin_streak_goal(harness: BotHarness) -> None:
    await _join(harness)
    texts = []
    for _ in range(3):
        harness.clock.advance(days=1)
        texts += harness.texts(await harness.send(harness.user(ANN), "/checkin"), ANN)
    assert "Mission complete: Streak (+40 points)" not in texts[1]
    assert "Mission complete: Streak (+40 points)" in texts[2]
    assert await _mission_points(harness) == (40, 0)


async def test_concurrent_purchases_reaching_a_goal_pay_it_once(harness: BotHarness) -> None:
    member = await _join(harness)
    program: Program = harness.services.program
    now = harness.clock.now

    async def buy(receipt: str) -> None:
        async with harness.sessions() as session:
            await record_purchase(
                session,
                program,
                member_id=member.id or 0,
                amount=Decimal(10),
                source="receipt",
                external_id=receipt,
                now=now,
                category="coffee",
            )

    await asyncio.gather(*(buy(f"P-{i}") for i in range(6)))
    assert await _mission_points(harness) == (30, 0)


async def test_progress_is_per_local_month_and_a_dated_mission_runs_only_between_its_dates(
    harness: BotHarness,
) -> None:
    member = await _join(harness)
    program: Program = harness.services.program
    # Nov 30, 23:30 in Shanghai; then Dec 1, 00:30: a new month, counted afresh.
    at = datetime(2026, 11, 30, 15, 30, tzinfo=UTC)
    harness.clock.now = at
    await _buy(harness, ANN, "10", "M-1")
    await _buy(harness, ANN, "10", "M-2")
    harness.clock.now = at + timedelta(hours=1)
    await _buy(harness, ANN, "10", "M-3")
    assert await _mission_points(harness) == (0, 0)
    dated = MissionRule(
        key="december",
        name="December",
        goal="purchases",
        target=Decimal(1),
        starts=datetime(2026, 12, 5).date(),
        ends=datetime(2026, 12, 6).date(),
        points=7,
    )
    harness.services.programs.current = program.model_copy(update={"missions": [dated]})
    async with harness.sessions() as session:
        assert await missions.progress(session, harness.services.program, member.id or 0, harness.clock.now) == []
        later = datetime(2026, 12, 5, 2, tzinfo=UTC)
        [item] = await missions.progress(session, harness.services.program, member.id or 0, later)
        assert item.value == 0 and not item.reached


def test_program_file_checks_missions() -> None:
    from loyalty.program import ProgramError, program_from_data

    base = {"name": "Shop", "rewards": [{"key": "latte", "title": "Latte", "cost": 10}]}
    good = {"key": "a", "name": "A", "goal": "purchases", "target": 3, "period": "month", "points": 5}
    assert program_from_data({**base, "missions": [good]}).missions[0].target == 3
    for bad, words in (
        ({**good, "period": None}, "either period or both starts and ends"),
        ({**good, "points": 0}, "give points or a reward"),
        ({**good, "target": "2.5"}, "whole number"),
        ({**good, "reward": "nope"}, "not among [[rewards]] keys"),
        ({**good, "tiers": ["Platinum"]}, "not tier level names"),
        ({**good, "goal": "likes"}, "missions.0.goal"),
    ):
        with pytest.raises(ProgramError, match=words.replace("[", r"\[").replace("]", r"\]")):
            program_from_data({**base, "missions": [bad]})
    with pytest.raises(ProgramError, match="mission keys must be unique"):
        program_from_data({**base, "missions": [good, good]})


async def test_stats_show_check_ins_and_mission_completion_rates(harness: BotHarness) -> None:
    from tests.harness import ADMIN_ID

    await _join(harness)
    await _join(harness, BOB, "Bob")
    for receipt in ("V-1", "V-2", "V-3"):
        await _buy(harness, ANN, "10", receipt)
    harness.clock.advance(hours=1)
    await harness.send(harness.user(ANN), "/checkin")
    await harness.send(harness.user(BOB), "/checkin")
    harness.clock.advance(minutes=1)
    calls = await harness.send(harness.user(ADMIN_ID, "Boss"), "/stats 7d")
    [card] = [c.params["text"] for c in calls if c.method == "sendMessage"]
    assert "📅 Check-ins: 2 · members checking in: 2" in card
    assert "🎯 Missions: completed · of members" in card
    assert "Visits: 1 · 50%" in card and "Spender: 0 · 0%" in card


async def test_a_mission_added_after_the_purchases_pays_when_missions_are_opened(harness: BotHarness) -> None:
    await _join(harness)
    for receipt in ("L-1", "L-2"):
        await _buy(harness, ANN, "10", receipt)
    program: Program = harness.services.program
    late = _mission("two", "purchases", "2", points=12)
    harness.services.programs.current = program.model_copy(update={"missions": [late]})
    [text] = harness.texts(await harness.send(harness.user(ANN), "/missions"), ANN)
    assert "Mission complete: Two (+12 points)" in text and "✅ done" in text
    [again] = harness.texts(await harness.send(harness.user(ANN), "/missions"), ANN)
    assert "Mission complete" not in again
    assert await _mission_points(harness) == (12, 0)
