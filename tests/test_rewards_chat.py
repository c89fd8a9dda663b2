"""Rewards end to end: browse, confirm (double tap, replay), coupons, /redeem at the till, admin catalog."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from storage.models import Coupon, Member
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness


async def _member_with_points(harness: BotHarness, points: int) -> Member:
    await harness.send(harness.user(1001, "Ann"), "/start")
    async with harness.sessions() as session:
        member = (await session.execute(select(Member).where(Member.telegram_id == 1001))).scalar_one()
    if points:
        await harness.send(harness.user(ADMIN_ID, "Boss"), f"/adjust {member.code} +{points} test")
    return member


async def _balance(harness: BotHarness) -> int:
    async with harness.sessions() as session:
        return int((await session.execute(select(Member.points).where(Member.telegram_id == 1001))).scalar_one())


async def test_browse_confirm_and_receive_a_coupon(harness: BotHarness) -> None:
    await _member_with_points(harness, 300)  # 350 with the welcome bonus
    ann = harness.user(1001)
    [listing] = harness.texts(await harness.send(ann, "/rewards"))
    assert "Free latte</b> — 300 points" in listing and "tote bag</b> — 800 points · 50 left" in listing
    buttons = harness.tg.last_message(1001)["reply_markup"]["inline_keyboard"]  # type: ignore[index]
    assert [row[0]["text"] for row in buttons] == ["Redeem: Free latte"], "only affordable rewards get a button"
    calls = await harness.press(ann, "Redeem: Free latte")
    assert "Redeem <b>Free latte</b> for 300 points? You have 350." in harness.texts(calls)
    confirm = harness.tg.last_message(1001)
    assert confirm is not None
    data = next(
        b["callback_data"]
        for row in confirm["reply_markup"]["inline_keyboard"]
        for b in row
        if b["text"] == "✅ Confirm"
    )
    # A double tap: two callback queries from the same confirmation message, and a replay of the first.
    first = harness.tg.callback_update(ann, confirm, data)
    calls = await harness.feed(first)
    calls += await harness.feed(harness.tg.callback_update(ann, confirm, data))
    calls += await harness.feed(first)
    photos = [c for c in calls if c.method == "sendPhoto"]
    assert len(photos) == 1
    code = re.search(r"<code>(\w{10})</code>", photos[0].params["caption"]).group(1)  # type: ignore[union-attr]
    assert "Points left: 50" in photos[0].params["caption"]
    assert await _balance(harness) == 50
    [coupons] = harness.texts(await harness.send(ann, "/coupons"))
    assert code in coupons and "Free latte" in coupons

    cashier = harness.user(CASHIER_ID, "Cass")
    typed = code.lower()[:5] + " " + code.lower()[5:]
    member = await harness.member(1001)
    assert member is not None
    [accepted] = harness.texts(await harness.send(cashier, f"/redeem {typed}"))
    assert f"accepted: <b>Free latte</b>, Ann's (<code>{member.code}</code>)" in accepted, "whose coupon it was"
    assert "was already used on" in harness.texts(await harness.send(cashier, f"/redeem {code}"))[0]
    assert "No coupon" in harness.texts(await harness.send(cashier, "/redeem ZZZZZZZZZZ"))[0]
    # A code that is not even the shape of one is no such coupon too, not a lesson in the command's syntax.
    assert harness.texts(await harness.send(cashier, "/redeem <b>")) == ["No coupon &lt;b&gt;. Please check the code."]
    assert "Usage" in harness.texts(await harness.send(cashier, "/redeem"))[0]
    assert "You have no coupons" in harness.texts(await harness.send(ann, "/coupons"))[0]


async def test_expired_coupon_and_short_balance(harness: BotHarness) -> None:
    await _member_with_points(harness, 250)
    ann = harness.user(1001)
    await harness.send(ann, "/rewards")
    await harness.press(ann, "Redeem: Free latte")
    calls = await harness.press(ann, "✅ Confirm")
    code = re.search(
        r"<code>(\w{10})</code>",  # type: ignore[union-attr]
        next(c for c in calls if c.method == "sendPhoto").params["caption"],
    ).group(1)
    # Another confirmation while the balance no longer covers it: refused with an alert, nothing spent.
    await harness.send(harness.user(ADMIN_ID, "Boss"), "/adjust 1001 +300 top up")
    await harness.send(ann, "/rewards")
    await harness.press(ann, "Redeem: Free latte")
    confirmation = harness.tg.last_message(1001)
    assert confirmation is not None
    await harness.send(harness.user(ADMIN_ID, "Boss"), "/adjust 1001 -300 undo")  # Ann is told: a message after it
    calls = await harness.press(ann, "✅ Confirm", message_id=confirmation["message_id"])
    alert = next(c for c in calls if c.method == "answerCallbackQuery")
    assert alert.params["text"] == "You need 300 points; you have 0." and alert.params["show_alert"] is True
    harness.clock.advance(days=31)
    reply = harness.texts(await harness.send(harness.user(CASHIER_ID, "Cass"), f"/redeem {code}"))[0]
    assert "expired on" in reply
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Coupon))).scalar_one() == 1


async def test_admin_manages_the_catalog_and_others_are_refused(harness: BotHarness) -> None:
    await _member_with_points(harness, 0)
    admin = harness.user(ADMIN_ID, "Boss")
    reply = harness.texts(await harness.send(admin, "/reward add 40 stock=5 limit=1 days=7 Cookie & <tea>"))[0]
    assert "Added reward" in reply and "Cookie &amp; &lt;tea&gt; for 40 points" in reply
    listing = harness.texts(await harness.send(admin, "/reward list"))[0]
    assert "Cookie" in listing and "active" in listing
    assert "— 40 points · 5 left" in harness.texts(await harness.send(harness.user(1001), "/rewards"))[0]
    for bad in (
        "/reward",
        "/reward add",
        "/reward add -5 Cake",
        "/reward add 0 Cake",
        "/reward add 10",
        "/reward add 10 days=0 Cake",
        "/reward frobnicate",
    ):
        assert "Usage" in harness.texts(await harness.send(admin, bad))[-1]
    assert "No reward" in harness.texts(await harness.send(admin, "/reward disable 999"))[0]
    assert "now disabled" in harness.texts(await harness.send(admin, "/reward disable latte"))[0]
    assert "Free latte" not in harness.texts(await harness.send(harness.user(1001), "/rewards"))[0]
    for user_id, command in ((1001, "/reward add 1 Free"), (CASHIER_ID, "/reward disable tote"), (1001, "/redeem X")):
        reply = harness.texts(await harness.send(harness.user(user_id, "X"), command))[0]
        assert reply == "Sorry, that command is only for the shop's staff."


async def test_a_reward_made_in_chat_can_be_given_its_chinese_titles(harness: BotHarness) -> None:
    admin = harness.user(ADMIN_ID, "Boss")
    await harness.send(harness.user(1002, "Mei", language_code="zh-hans"), "/start")
    added = harness.texts(await harness.send(admin, "/reward add 40 Cookie box"))[0]
    reward_id = re.search(r"#(\d+)", added).group(1)  # type: ignore[union-attr]
    reply = harness.texts(await harness.send(admin, f"/reward title {reward_id} zh-Hans 曲奇礼盒"))[0]
    assert reply == f"Reward #{reward_id} is now called 曲奇礼盒 in zh-Hans."
    await harness.send(admin, f"/reward title {reward_id} zh-Hant 曲奇禮盒")
    assert (
        "曲奇礼盒"
        in harness.texts(await harness.send(harness.user(1002, "Mei", language_code="zh-hans"), "/rewards"))[0]
    )
    # The program file's rewards take their titles from the file, at every start: refused, with where to go.
    refused = harness.texts(await harness.send(admin, "/reward title latte zh-Hans 拿铁"))[0]
    assert "comes from the program file" in refused
    for bad in (
        f"/reward title {reward_id} fr Biscuits",
        f"/reward title {reward_id} zh-Hans",
        "/reward title 999 en X",
    ):
        assert harness.texts(await harness.send(admin, bad))[0].startswith(("Usage", "No reward")), bad


async def test_tier_restricted_rewards_and_forged_callbacks(harness: BotHarness) -> None:
    await _member_with_points(harness, 1000)
    admin = harness.user(ADMIN_ID, "Boss")
    assert "Unknown tier" in harness.texts(await harness.send(admin, "/reward add 100 tier=Platinum Lounge"))[0]
    assert "Added reward" in harness.texts(await harness.send(admin, "/reward add 100 tier=gold Lounge"))[0]
    ann = harness.user(1001)
    assert "Lounge" not in harness.texts(await harness.send(ann, "/rewards"))[0]
    message = harness.tg.last_message(1001)
    assert message is not None
    async with harness.sessions() as session:
        from storage.models import Reward

        lounge = (await session.execute(select(Reward.id).where(Reward.title == "Lounge"))).scalar_one()
    for forged, alert in (
        (f"rw:confirm:{lounge}", "higher tier"),
        ("rw:confirm:9999", "no longer available"),
        ("rw:pick:9999", "no longer available"),
    ):
        calls = await harness.feed(harness.tg.callback_update(ann, message, forged))
        answer = next(c for c in calls if c.method == "answerCallbackQuery")
        assert alert in answer.params["text"], forged
    assert await _balance(harness) == 1050


async def test_a_tap_no_feature_takes_is_still_answered(harness: BotHarness) -> None:
    await _member_with_points(harness, 100)
    before = await _balance(harness)
    ann = harness.user(1001)
    await harness.send(ann, "/rewards")
    message = harness.tg.last_message(1001)
    assert message is not None
    # An action the enum does not know, another bot version's prefix, ids beyond 64 bits (the database would
    # refuse them), and a staff button pressed by a member.
    huge = "99999999999999999999"
    for forged, answer in (
        ("rw:bogus:1", "This button is no longer valid."),
        ("zz:1", "This button is no longer valid."),
        ("pf:nowhere", "This button is no longer valid."),
        (f"rw:pick:{huge}", "This button is no longer valid."),
        (f"rw:confirm:{huge}", "This button is no longer valid."),
        (f"hist:{huge}", "This button is no longer valid."),
        (f"nps:{huge}:5", "This button is no longer valid."),
        (f"csat:{huge}:5", "This button is no longer valid."),
        ("bcc:1:paused", "Sorry, that button is only for the shop's staff."),
        ("bc:send:", "Sorry, that button is only for the shop's staff."),
        ("bcc:1:done", "Sorry, that button is only for the shop's staff."),
    ):
        calls = await harness.feed(harness.tg.callback_update(ann, message, forged))
        answers = [c for c in calls if c.method == "answerCallbackQuery"]
        assert [a.params["text"] for a in answers] == [answer], forged
    # Someone who never joined pressing a member's button is invited to join.
    calls = await harness.feed(harness.tg.callback_update(harness.user(4242, "Zed"), message, "rw:pick:1"))
    answers = [c for c in calls if c.method == "answerCallbackQuery"]
    assert [a.params["text"] for a in answers] == ["You are not a member yet. Send /start to join."]
    assert await _balance(harness) == before
