"""Promotions and campaigns end to end: the member sees why they earned what they did; admins run campaigns."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import Campaign, Member
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness


async def _join(harness: BotHarness) -> str:
    await harness.send(harness.user(1001, "Ann"), "/start")
    async with harness.sessions() as session:
        return str((await session.execute(select(Member.code).where(Member.telegram_id == 1001))).scalar_one())


async def test_the_member_is_told_why(harness: BotHarness) -> None:
    code = await _join(harness)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {code} 21.50 private-label")
    [note] = harness.texts(calls, 1001)
    assert "<b>63</b> points" in note and "63 points: 21 base ×3 Our own beans" in note
    assert "63 points: 21 base ×3 Our own beans" in harness.texts(calls, CASHIER_ID)[0]
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {code} 10 items=3 R-9")
    assert "60 points: 10 base +50 Bring friends" in harness.texts(calls, 1001)[0]
    # Once a week (Monday to Sunday, local): the same basket an hour later earns the base only...
    harness.clock.advance(hours=1)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {code} 10 items=3 R-10")
    assert "base" not in harness.texts(calls, 1001)[0] and "<b>10</b> points" in harness.texts(calls, 1001)[0]
    # ...and on Monday the week starts again.
    harness.clock.advance(days=1)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {code} 10 items=3 R-11")
    assert "60 points: 10 base +50 Bring friends" in harness.texts(calls, 1001)[0]
    for bad in ("items=0", "items=x", "items=1000", "items=2 items=3"):
        reply = harness.texts(await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {code} 10 {bad}"))[0]
        assert "number of items" in reply or "Usage" in reply


async def test_admin_runs_a_campaign(harness: BotHarness) -> None:
    code = await _join(harness)
    admin = harness.user(ADMIN_ID, "Boss")
    reply = harness.texts(await harness.send(admin, "/campaign add x4 3 Rainy <days> category=coffee"))[0]
    assert "Campaign #1 “Rainy &lt;days&gt;” runs until" in reply
    assert "Rainy &lt;days&gt; (×4, coffee)" in harness.texts(await harness.send(admin, "/campaign list"))[0]
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {code} 10 coffee")
    assert "40 points: 10 base ×4 Rainy &lt;days&gt;" in harness.texts(calls, 1001)[0]
    for bad, expected in (
        ("/campaign add x20 3 Big", "multiplier like x2"),
        ("/campaign add x2 0 Big", "days"),
        ("/campaign add +5 400 Big", "days"),
        ("/campaign add x2 3", "Usage"),
        ("/campaign", "Usage"),
        ("/campaign end 99", "No running campaign"),
        ("/campaign add x2 3 Big category=<b>", "category"),
    ):
        assert expected in harness.texts(await harness.send(admin, bad))[0], bad
    assert "has ended" in harness.texts(await harness.send(admin, "/campaign end 1"))[0]
    assert harness.texts(await harness.send(admin, "/campaign list")) == ["No campaigns are running."]
    harness.clock.advance(minutes=1)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {code} 10 coffee")
    assert "<b>10</b> points" in harness.texts(calls, 1001)[0]
    cashier_reply = harness.texts(await harness.send(harness.user(CASHIER_ID, "Cass"), "/campaign list"))[0]
    assert cashier_reply == "Sorry, that command is only for the shop's staff."


async def test_a_campaign_is_named_in_chinese_and_members_read_it_in_their_language(harness: BotHarness) -> None:
    admin = harness.user(ADMIN_ID, "Boss")
    mei = harness.user(1002, "Mei", language_code="zh-hans")
    await harness.send(mei, "/start")
    code = await _join(harness)
    assert "Campaign #1" in harness.texts(await harness.send(admin, "/campaign add x4 3 Rainy week"))[0]
    reply = harness.texts(await harness.send(admin, "/campaign name 1 zh-Hans 雨天  双倍"))[0]
    assert reply == "Campaign #1 is now called 雨天 双倍 in zh-Hans."
    async with harness.sessions() as session:
        mei_code = (await session.execute(select(Member.code).where(Member.telegram_id == 1002))).scalar_one()
    cashier = harness.user(CASHIER_ID, "Cass")
    note = harness.texts(await harness.send(cashier, f"/purchase {mei_code} 10 R-1"), 1002)[0]
    assert "×4 雨天 双倍" in note and "Rainy week" not in note
    assert "×4 Rainy week" in harness.texts(await harness.send(cashier, f"/purchase {code} 10 R-2"), 1001)[0]
    history = harness.texts(await harness.send(mei, "/history"))[0]
    assert "×4 雨天 双倍" in history and "Rainy week" not in history
    # The admin reads the list in their language.
    chinese_admin = harness.user(ADMIN_ID, "Boss", language_code="zh-hans")
    assert "#1 雨天 双倍（×4）" in harness.texts(await harness.send(chinese_admin, "/campaign list"))[0]
    assert "#1 Rainy week (×4)" in harness.texts(await harness.send(admin, "/campaign list"))[0]
    # A name given after the purchase names it too: the purchase remembers its campaign, not a translation.
    await harness.send(admin, "/campaign end 1")
    await harness.send(admin, "/campaign name 1 zh-hans 雨天积分翻倍")
    assert "×4 雨天积分翻倍" in harness.texts(await harness.send(mei, "/history"))[0]
    for bad, expected in (
        ("/campaign name 9 zh-Hans 晴天", "No campaign 9."),
        ("/campaign name x zh-Hans 晴天", "No campaign x."),
        ("/campaign name 1 fr Semaine", "Campaigns can be named in en, zh-Hans or zh-Hant, not fr."),
        ("/campaign name 1 zh-Hans " + "长" * 49, "A campaign's name may be up to 48 characters."),
        ("/campaign name 1 zh-Hans", "Usage"),
    ):
        assert harness.texts(await harness.send(admin, bad))[0].startswith(expected), bad
    async with harness.sessions() as session:
        campaign = await session.get(Campaign, 1)
    assert campaign is not None
    assert (campaign.name, campaign.name_zh_hans, campaign.name_zh_hant) == ("Rainy week", "雨天积分翻倍", None)
