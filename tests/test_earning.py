"""Earning rules with a controlled clock: base and rounding, promotions, the stacking rule, limits, campaigns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from loyalty.campaigns import end_campaign, parse_effect, start_campaign
from loyalty.earning import Basket, earning_for, period_start
from loyalty.members import join
from loyalty.program import ProgramError, load_program, parse_program
from loyalty.purchases import record_purchase
from storage.database import SessionFactory

PROGRAM = parse_program("""
name = "Test Cafe"
timezone = "Asia/Shanghai"
[earn]
points_per_unit = "1"
minimum_amount = "5"
[[promotions]]
name = "Double Afternoons"
multiplier = "2"
weekdays = ["tue", "wed", "thu"]
start_time = "14:00"
end_time = "17:00"
[[promotions]]
name = "Own beans"
multiplier = "3"
categories = ["private-label"]
[[promotions]]
name = "Bring friends"
bonus = 50
min_items = 3
limit_per_member = 1
limit_period = "week"
[[promotions]]
name = "Big spender"
bonus = 20
min_amount = "100"
starts = 2026-12-01
ends = 2026-12-31
""")
TUE_1500_LOCAL = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # Tuesday 15:00 in Shanghai
TUE_1700_LOCAL = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # the window has just closed
MON_1500_LOCAL = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)


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
                now=MON_1500_LOCAL,
            )
        ).member
        assert member.id is not None
        return member.id


async def _earn(
    sessions: SessionFactory, member_id: int, amount: str, at: datetime, category: str | None = None, items: int = 1
):
    async with sessions() as session:
        return await earning_for(session, PROGRAM, member_id, Basket(Decimal(amount), category, items, at))


async def test_time_window_weekday_and_timezone(sessions: SessionFactory) -> None:
    member_id = await _member(sessions)
    inside = await _earn(sessions, member_id, "32", TUE_1500_LOCAL)
    assert (inside.base, inside.total, inside.promotion, inside.detail) == (32, 64, "Double Afternoons", "×2")
    assert (await _earn(sessions, member_id, "32", TUE_1700_LOCAL)).total == 32
    assert (await _earn(sessions, member_id, "32", MON_1500_LOCAL)).total == 32


async def test_the_best_single_promotion_applies(sessions: SessionFactory) -> None:
    member_id = await _member(sessions)
    # Tuesday afternoon and private-label: ×3 beats ×2; they do not multiply together.
    both = await _earn(sessions, member_id, "10", TUE_1500_LOCAL, "private-label")
    assert (both.total, both.promotion) == (30, "Own beans")
    # A small basket of 3 items: +50 beats ×2 on a base of 10.
    friends = await _earn(sessions, member_id, "10", TUE_1500_LOCAL, items=3)
    assert (friends.total, friends.promotion, friends.detail) == (60, "Bring friends", "+50")
    # A big basket of 3 items: ×2 on 80 (+80) beats +50.
    assert (await _earn(sessions, member_id, "80", TUE_1500_LOCAL, items=3)).promotion == "Double Afternoons"


async def test_minimum_amount_and_date_range(sessions: SessionFactory) -> None:
    member_id = await _member(sessions)
    below = await _earn(sessions, member_id, "4.99", TUE_1500_LOCAL, items=5)
    assert (below.base, below.total, below.promotion) == (0, 0, None)
    december = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # a Monday morning in December
    assert (await _earn(sessions, member_id, "100", december)).total == 120
    assert (await _earn(sessions, member_id, "99.99", december)).total == 99
    assert (await _earn(sessions, member_id, "100", datetime(2027, 1, 4, 2, tzinfo=UTC))).total == 100


async def test_per_member_limit_per_local_week(sessions: SessionFactory) -> None:
    member_id = await _member(sessions)

    async def buy(receipt: str, at: datetime) -> int:
        async with sessions() as session:
            result = await record_purchase(
                session,
                PROGRAM,
                member_id=member_id,
                amount=Decimal("10"),
                source="t",
                external_id=receipt,
                now=at,
                items=3,
            )
            return result.points

    assert await buy("a", MON_1500_LOCAL) == 60
    assert await buy("b", MON_1500_LOCAL + timedelta(days=2)) == 20  # Wednesday 15:00: the ×2 instead
    assert await buy("c", MON_1500_LOCAL + timedelta(days=7)) == 60  # next week: allowed again


def test_period_starts_follow_the_local_calendar() -> None:
    at = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # Tuesday Dec 1, 01:00 in Shanghai
    assert period_start(at, "day", PROGRAM) == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert period_start(at, "week", PROGRAM) == datetime(2026, 11, 29, 16, 0, tzinfo=UTC)
    assert period_start(at, "month", PROGRAM) == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)


async def test_campaigns_from_chat_compete_with_the_file(sessions: SessionFactory) -> None:
    member_id = await _member(sessions)
    effect = parse_effect("x4")
    assert effect is not None
    async with sessions() as session:
        started = await start_campaign(
            session, name="Rainy week", effect=effect, days=7, category="coffee", actor_id=9, now=MON_1500_LOCAL
        )
    assert started.id is not None
    rainy = await _earn(sessions, member_id, "10", TUE_1500_LOCAL, "coffee")
    assert (rainy.total, rainy.promotion) == (40, "Rainy week")
    assert (await _earn(sessions, member_id, "10", TUE_1500_LOCAL, "tea")).promotion == "Double Afternoons"
    assert (await _earn(sessions, member_id, "10", MON_1500_LOCAL + timedelta(days=7), "coffee")).total == 10
    async with sessions() as session:
        assert await end_campaign(session, started.id, TUE_1500_LOCAL)
        assert not await end_campaign(session, started.id, TUE_1500_LOCAL)
    assert (await _earn(sessions, member_id, "10", TUE_1500_LOCAL + timedelta(minutes=1), "coffee")).total == 20


def test_campaign_effects_as_typed() -> None:
    assert parse_effect("x2") is not None and parse_effect("×1.5") is not None and parse_effect("+50") is not None
    for bad in ("x1", "x0.5", "x11", "+0", "-5", "2", "x", "+", "x2x", "<b>"):
        assert parse_effect(bad) is None, bad


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('name = "P"\nmultiplier = "2"\nbonus = 5', "exactly one of multiplier"),
        ('name = "P"', "exactly one of multiplier"),
        ('name = "P"\nmultiplier = "1"', "greater than 1"),
        ('name = "P"\nbonus = 5\nstart_time = "14:00"', "both start_time and end_time"),
        ('name = "P"\nbonus = 5\nstart_time = "17:00"\nend_time = "14:00"', "start_time must be before"),
        ('name = "P"\nbonus = 5\nstart_time = "25:00"\nend_time = "26:00"', "start_time"),
        ('name = "P"\nbonus = 5\nweekdays = ["funday"]', "weekdays"),
        ('name = "P"\nbonus = 5\nstarts = 2026-02-30', "TOML"),
        ('name = "P"\nbonus = 5\nlimit_period = "year"', "limit_period"),
        ('name = "P"\nbonus = 5\nhappy = true', "unknown key"),
    ],
)
def test_malformed_promotions_name_the_problem(section: str, message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        parse_program(f'name = "X"\n[[promotions]]\n{section}\n')


def test_promotions_and_tier_perks_read_in_the_members_language() -> None:
    program = parse_program("""
name = "X"
[[promotions]]
name = "Double Afternoons"
name_zh_hans = "下午双倍积分"
name_zh_hant = "下午雙倍積分"
multiplier = "2"
[[promotions]]
name = "Only English"
bonus = 5
[[tiers.levels]]
name = "Silver"
enter = "500"
perks = "1.25× points"
perks_zh_hans = "1.25倍积分"
perks_zh_hant = "1.25倍積分"
""")
    double, english = program.promotions
    assert [double.name_in(language) for language in ("en", "zh-Hans", "zh-Hant")] == [
        "Double Afternoons",
        "下午双倍积分",
        "下午雙倍積分",
    ]
    assert english.name_in("zh-Hans") == "Only English"  # no translation: the name as written
    # A purchase records the promotion's name; members read it through the program, in their language.
    assert program.promotion_name("Double Afternoons", "zh-Hant") == "下午雙倍積分"
    assert program.promotion_name("Rainy week", "zh-Hans") == "Rainy week"  # a campaign's, or one since removed
    [silver] = program.tiers.levels
    assert (silver.perks_in("en"), silver.perks_in("zh-Hans"), silver.perks_in("zh-Hant")) == (
        "1.25× points",
        "1.25倍积分",
        "1.25倍積分",
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[promotions]]\nname = "P"\nname_zh_hans = ""\nbonus = 5', "promotions.0.name_zh_hans"),
        ('[[promotions]]\nname = "P"\nname_zh_hant = "' + "長" * 49 + '"\nbonus = 5', "promotions.0.name_zh_hant"),
        (
            '[[promotions]]\nname = "P"\nbonus = 5\n[[promotions]]\nname = "P"\nbonus = 6',
            "promotion names must be unique",
        ),
        ('[[tiers.levels]]\nname = "S"\nenter = "1"\nperks_zh_hans = ""', "perks_zh_hans"),
        ('[[tiers.levels]]\nname = "S"\nenter = "1"\nperks_zh = "x"', "unknown key"),
    ],
)
def test_malformed_translations_name_the_problem(toml: str, message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        parse_program(f'name = "X"\n{toml}\n')


def test_the_example_program_speaks_both_chinese_scripts() -> None:
    program = load_program()
    for promotion in program.promotions:
        assert promotion.name_zh_hans and promotion.name_zh_hant, promotion.name
    for card in program.punch_cards:
        assert card.name_zh_hans and card.name_zh_hant, card.key
    for level in program.tiers.levels:
        assert level.name_zh_hans and level.name_zh_hant and level.perks_zh_hans and level.perks_zh_hant, level.name
    for reward in program.rewards:
        assert reward.title_zh_hans and reward.title_zh_hant, reward.key
