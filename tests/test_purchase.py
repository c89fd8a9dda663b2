"""/purchase and /adjust from the staff side: roles, amounts, idempotency, member notification."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.models import AuditLog, LedgerEntry, Member, Purchase
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness


async def _join(harness: BotHarness, user_id: int = 1001, name: str = "Ann", username: str | None = "ann_w") -> Member:
    await harness.send(harness.user(user_id, name, username=username), "/start")
    async with harness.sessions() as session:
        return (await session.execute(select(Member).where(Member.telegram_id == user_id))).scalar_one()


async def _count(harness: BotHarness, model: type) -> int:
    async with harness.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _points(harness: BotHarness, user_id: int = 1001) -> int:
    async with harness.sessions() as session:
        return int((await session.execute(select(Member.points).where(Member.telegram_id == user_id))).scalar_one())


@pytest.mark.parametrize("ref", ["code", "id", "@ann_w", "@ANN_W", "lower-code"])
async def test_cashier_records_a_purchase_by_any_member_reference(harness: BotHarness, ref: str) -> None:
    member = await _join(harness)
    reference = {"code": member.code, "id": "1001", "lower-code": member.code.lower()}.get(ref, ref)
    cashier = harness.user(CASHIER_ID, "Cass")
    calls = await harness.send(cashier, f"/purchase {reference} 36.50 coffee")
    [staff_reply] = harness.texts(calls, CASHIER_ID)
    assert "+36 points" in staff_reply and "balance 86" in staff_reply and member.code in staff_reply
    [member_note] = harness.texts(calls, 1001)
    assert "36.50" in member_note and "<b>36</b> points" in member_note and "86 points" in member_note
    assert await _points(harness) == 86


@pytest.mark.parametrize(
    "typed", ["/Purchase", "/PURCHASE", "/purchase@loyalty_test_bot", "/Purchase@Loyalty_Test_Bot"]
)
async def test_a_command_capitalised_by_a_phone_or_naming_the_bot_still_works(harness: BotHarness, typed: str) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"{typed} {member.code} 10 coffee")
    assert "+10 points" in harness.texts(calls, CASHIER_ID)[0]
    [balance] = harness.texts(await harness.send(harness.user(1001, "Ann"), "/Balance"), 1001)
    assert "<b>60</b> points" in balance


async def test_a_command_for_another_bot_is_not_ours(harness: BotHarness) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase@other_bot {member.code} 10 coffee")
    assert await _count(harness, Purchase) == 0 and not any("Recorded" in t for t in harness.texts(calls))


async def test_members_cannot_record_purchases_and_learn_nothing(harness: BotHarness) -> None:
    member = await _join(harness)
    stranger = harness.user(5555, "Eve")
    await harness.send(stranger, "/start")
    for command in (f"/purchase {member.code} 10", "/purchase @nobody 10", f"/adjust {member.code} +100 gift"):
        calls = await harness.send(stranger, command)
        [reply] = harness.texts(calls)
        assert reply == "Sorry, that command is only for the shop's staff."
    assert await _points(harness) == 50
    assert await _count(harness, Purchase) == 0


async def test_cashiers_cannot_adjust(harness: BotHarness) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/adjust {member.code} +100 gift")
    assert harness.texts(calls) == ["Sorry, that command is only for the shop's staff."]
    assert await _points(harness) == 50


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("0", "more than zero"),
        ("0.00", "more than zero"),
        ("-5", "more than zero"),
        ("abc", "a number like 12.50"),
        ("12,50", "Please write the amount with a dot, like 12.50"),
        ("1,2345", "a number like 12.50"),
        ("¥", "Usage: /purchase"),
        ("1e3", "a number like 12.50"),
        ("NaN", "a number like 12.50"),
        ("Infinity", "a number like 12.50"),
        ("12.345", "at most 2 decimal places"),
        ("10000.01", "above the limit of CN¥10,000.00"),
        ("99999999999999999999", "above the limit"),
    ],
)
async def test_bad_amounts_are_refused_and_change_nothing(harness: BotHarness, amount: str, expected: str) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {member.code} {amount}")
    [reply] = harness.texts(calls, CASHIER_ID)
    assert expected in reply
    assert harness.texts(calls, 1001) == []
    assert await _count(harness, Purchase) == 0 and await _points(harness) == 50


async def test_usage_unknown_member_and_bad_receipt(harness: BotHarness) -> None:
    await _join(harness)
    cashier = harness.user(CASHIER_ID, "Cass")
    usage = harness.texts(await harness.send(cashier, "/purchase"))[0]
    assert "Usage: /purchase &lt;member&gt; &lt;amount&gt;" in usage
    assert "No member found for @&lt;x&gt;" in harness.texts(await harness.send(cashier, "/purchase @<x> 10"))[0]
    assert "No member found" in harness.texts(await harness.send(cashier, "/purchase 77777777 10"))[0]
    # Characters Python calls digits that are not numbers (a superscript two) are not an id either.
    assert "No member found" in harness.texts(await harness.send(cashier, "/purchase ² 10"))[0]
    reply = harness.texts(await harness.send(cashier, "/purchase @ann_w 10 items=²"))[0]
    assert "number of items must be a whole number" in reply
    reply = harness.texts(await harness.send(cashier, "/purchase @ann_w 10 coffee <receipt>"))[0]
    assert "receipt number may use" in reply
    assert await _count(harness, Purchase) == 0


async def test_duplicate_receipt_awards_once(harness: BotHarness) -> None:
    member = await _join(harness)
    cashier = harness.user(CASHIER_ID, "Cass")
    await harness.send(cashier, f"/purchase {member.code} 20 coffee R-1001")
    calls = await harness.send(cashier, f"/purchase {member.code} 20 coffee R-1001")
    [reply] = harness.texts(calls, CASHIER_ID)
    assert "Receipt R-1001 was already recorded" in reply and "Nothing was added" in reply
    assert harness.texts(calls, 1001) == []
    assert await _points(harness) == 70 and await _count(harness, Purchase) == 1


async def test_redelivered_update_awards_once(harness: BotHarness) -> None:
    member = await _join(harness)
    update = harness.tg.message_update(harness.user(CASHIER_ID, "Cass"), f"/purchase {member.code} 20")
    await harness.feed(update)
    calls = await harness.feed(update)
    assert "already recorded" in harness.texts(calls, CASHIER_ID)[0]
    assert await _points(harness) == 70 and await _count(harness, Purchase) == 1


async def test_below_minimum_or_fractional_points_round_down(harness: BotHarness) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {member.code} 0.99")
    assert "+0 points" in harness.texts(calls, CASHIER_ID)[0]
    assert await _points(harness) == 50 and await _count(harness, Purchase) == 1


async def test_member_notification_failure_is_reported_not_fatal(harness: BotHarness) -> None:
    member = await _join(harness)
    harness.tg.fail_for_chat(1001, 403, "Forbidden: bot was blocked by the user")
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {member.code} 10")
    texts = harness.texts(calls, CASHIER_ID)
    assert "+10 points" in texts[0] and "could not be notified" in texts[1]
    assert await _points(harness) == 60


async def test_admin_adjusts_points_with_audit_and_replay_safety(harness: BotHarness) -> None:
    member = await _join(harness)
    admin = harness.user(ADMIN_ID, "Boss")
    calls = await harness.send(admin, f"/adjust {member.code} +25 birthday gift")
    assert "+25 points for Ann" in harness.texts(calls, ADMIN_ID)[0] and "Balance: 75" in harness.texts(calls)[0]
    update = harness.tg.message_update(admin, f"/adjust {member.code} -30 correction")
    await harness.feed(update)
    calls = await harness.feed(update)
    assert "already made" in harness.texts(calls)[0]
    assert await _points(harness) == 45
    calls = await harness.send(admin, f"/adjust {member.code} -500 oops")
    assert "only 45 points" in harness.texts(calls)[0]
    for bad in (
        "/adjust",
        f"/adjust {member.code} 25 no sign",
        f"/adjust {member.code} +0 zero",
        f"/adjust {member.code} +x y",
        "/adjust @nobody +5 who",
    ):
        [reply] = harness.texts(await harness.send(admin, bad))
        assert "Usage" in reply or "signed whole number" in reply or "No member found" in reply
    assert await _points(harness) == 45
    async with harness.sessions() as session:
        audit = (await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
        reasons = (await session.execute(select(LedgerEntry.reason).where(LedgerEntry.kind == "adjust"))).scalars()
        assert [(a.actor_id, a.points, a.detail) for a in audit] == [
            (ADMIN_ID, 25, "birthday gift"),
            (ADMIN_ID, -30, "correction"),
        ]
        assert sorted(r or "" for r in reasons) == ["birthday gift", "correction"]


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("/purchase {code} ５", "The amount must be a number like 12.50."),
        ("/purchase {code} ٥٠", "The amount must be a number like 12.50."),
        ("/purchase {code} १०", "The amount must be a number like 12.50."),
        ("/purchase １００１ 5", "No member found for １００１."),
        ("/purchase {code} 5 coffee items=３", "The number of items must be a whole number from 1 to 999."),
        ("/adjust {code} +５ gift", "Points must be a signed whole number like +50 or -20, not zero."),
        ("/adjust １００１ +5 gift", "No member found for １００１."),
    ],
)
async def test_digits_of_other_scripts_are_refused(harness: BotHarness, command: str, reply: str) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(ADMIN_ID, "Boss"), command.format(code=member.code))
    assert harness.texts(calls, ADMIN_ID) == [reply]
    assert await _points(harness) == 50
    assert await _count(harness, Purchase) == 0


async def test_staff_cannot_record_purchases_refunds_or_adjustments_on_their_own_account(harness: BotHarness) -> None:
    friend = await _join(harness)
    cashier = harness.user(CASHIER_ID, "Cass")
    await harness.send(cashier, "/start")  # the cashier is a member too
    admin = harness.user(ADMIN_ID, "Boss")
    await harness.send(admin, "/start")
    # The friend's purchase, refunded by the cashier: fine. The cashier's own: refused.
    await harness.send(cashier, f"/purchase {friend.code} 10 coffee R-FRIEND")
    own = harness.texts(await harness.send(cashier, f"/purchase {CASHIER_ID} 500 coffee R-OWN"), CASHIER_ID)
    assert own == [
        "That is your own member account: a colleague has to do this for you. Nothing was changed, and the "
        "attempt is in the audit log."
    ]
    assert await _points(harness, CASHIER_ID) == 50 and await _count(harness, Purchase) == 1
    await harness.send(admin, f"/purchase {CASHIER_ID} 20 coffee R-CASS")  # a colleague records it
    refused = harness.texts(await harness.send(cashier, "/refund R-CASS"), CASHIER_ID)
    assert refused and refused[0].startswith("That is your own member account")
    assert await _points(harness, CASHIER_ID) == 70
    adjusted = harness.texts(await harness.send(admin, f"/adjust {ADMIN_ID} +1000 bonus for me"), ADMIN_ID)
    assert adjusted[0].startswith("That is your own member account") and await _points(harness, ADMIN_ID) == 50
    async with harness.sessions() as session:
        actions = [a for (a,) in (await session.execute(select(AuditLog.action).order_by(AuditLog.id))).all()]
    assert actions == ["own_purchase", "own_refund", "own_adjust"]
    [log] = harness.texts(await harness.send(admin, "/audit"), ADMIN_ID)
    assert log.count("refused, own account") == 3 and f"{CASHIER_ID}" in log and "R-OWN" in log


async def test_the_audit_log_is_for_admins(harness: BotHarness) -> None:
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), "/audit")
    assert harness.texts(calls) == ["Sorry, that command is only for the shop's staff."]


@pytest.mark.parametrize(
    ("typed", "points"),
    [("¥12", 12), ("12元", 12), ("12 元", 12), ("1,200", 1200), ("12.5元", 12), ("CNY 36.50", 36), ("￥8", 8)],
)
async def test_amounts_as_people_write_them_are_understood(harness: BotHarness, typed: str, points: int) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {member.code} {typed} coffee")
    [reply] = harness.texts(calls, CASHIER_ID)
    assert f"+{points} point" in reply, reply
    assert await _points(harness) == 50 + points


async def test_a_decimal_comma_is_refused_with_a_hint_and_records_nothing(harness: BotHarness) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase {member.code} 12,50 coffee")
    assert harness.texts(calls) == ["Is that a decimal comma? Please write the amount with a dot, like 12.50."]
    assert await _count(harness, Purchase) == 0


async def test_the_amount_typed_before_the_member_is_understood(harness: BotHarness) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(CASHIER_ID, "Cass"), f"/purchase 12.50 {member.code} coffee")
    [reply] = harness.texts(calls, CASHIER_ID)
    assert "Recorded CN¥12.50 for Ann" in reply and "+12 points" in reply


async def test_a_mistyped_category_is_refused_with_a_suggestion(harness: BotHarness) -> None:
    member = await _join(harness)
    cashier = harness.user(CASHIER_ID, "Cass")
    [reply] = harness.texts(await harness.send(cashier, f"/purchase {member.code} 12 cofee"))
    assert reply.startswith("Unknown category. Did you mean coffee? The categories are: ")
    assert "tea" in reply and "pastry" in reply and "private-label" in reply
    [unknown] = harness.texts(await harness.send(cashier, f"/purchase {member.code} 12 xyz"))
    assert unknown.startswith("Unknown category. The categories are: ")
    assert await _count(harness, Purchase) == 0
    [ok] = harness.texts(await harness.send(cashier, f"/purchase {member.code} 12 Coffee"), CASHIER_ID)
    assert "+12 points" in ok


async def test_members_are_told_of_adjustments_with_the_reason_unless_silent(harness: BotHarness) -> None:
    member = await _join(harness)
    admin = harness.user(ADMIN_ID, "Boss")
    calls = await harness.send(admin, f"/adjust {member.code} +30 sorry for the wait")
    [note] = harness.texts(calls, 1001)
    assert note == "🪙 +30 points from our team: sorry for the wait\nYour balance: 80 points."
    calls = await harness.send(admin, f"/adjust {member.code} -10 typo fix --silent")
    assert harness.texts(calls, 1001) == [], "a silent adjustment tells the member nothing"
    assert "The member was not told (--silent)." in harness.texts(calls, ADMIN_ID)[0]
    async with harness.sessions() as session:
        reasons = [
            r for (r,) in (await session.execute(select(LedgerEntry.reason).where(LedgerEntry.kind == "adjust")))
        ]
    assert reasons == ["sorry for the wait", "typo fix"]


async def test_a_member_is_told_in_their_language_when_a_purchase_is_refunded(harness: BotHarness) -> None:
    await harness.send(harness.user(1001, "Ann", language_code="zh-hans"), "/start")
    cashier = harness.user(CASHIER_ID, "Cass")
    await harness.send(cashier, "/purchase 1001 40 coffee R-40")
    calls = await harness.send(cashier, "/refund R-40 10")
    [note] = harness.texts(calls, 1001)
    assert note.startswith("↩️ 您的消费已退款（") and "−10 积分" in note
    assert "Refunded" in harness.texts(calls, CASHIER_ID)[0]


async def test_a_member_reads_the_promotion_in_their_language_in_the_notice_and_history(harness: BotHarness) -> None:
    mei, ann = harness.user(1001, "Mei", language_code="zh-hans"), harness.user(1002, "Ann")
    await harness.send(mei, "/start")
    await harness.send(ann, "/start")
    harness.clock.advance(days=2, hours=3)  # Tuesday 15:00 in Shanghai: Double Afternoons
    cashier = harness.user(CASHIER_ID, "Cass")
    calls = await harness.send(cashier, "/purchase 1001 40 tea R-1")
    [notice] = harness.texts(calls, 1001)
    assert "共 80 积分：基础 40 ×2 下午双倍积分" in notice
    assert "×2 Double Afternoons" in harness.texts(calls, CASHIER_ID)[0], "the cashier reads their own language"
    [history] = harness.texts(await harness.send(mei, "/history"), 1001)
    assert "×2 下午双倍积分" in history and "Double Afternoons" not in history
    calls = await harness.send(cashier, "/purchase 1002 40 private-label R-2")
    assert "120 points: 40 base ×3 Our own beans" in harness.texts(calls, 1002)[0]
    [history] = harness.texts(await harness.send(ann, "/history"), 1002)
    assert "<b>+120</b> · Purchase (×3 Our own beans)" in history
    # The purchase keeps the promotion's key, not a translation: in Traditional Chinese it reads in that script.
    await harness.send(mei, "/language")
    await harness.press(mei, "繁體中文")
    [history] = harness.texts(await harness.send(mei, "/history"), 1001)
    assert "×2 下午雙倍積分" in history
