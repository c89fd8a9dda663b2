"""Paid VIP with Telegram Stars, end to end through the fake Bot API: the invoice, pre-checkout, payments delivered
twice, earning, the monthly gift and the reminder with a driven clock, refunds twice, and bad input."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from loyalty import vip
from loyalty.privacy import erase
from loyalty.program import Program, ProgramError, VipRules, load_program, parse_program
from notifications import vip as vip_handlers
from storage.models import Coupon, LedgerEntry, Member, VipPayment, VipSubscription
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness

ANN, BOB = 1001, 1002
PRICE = 250


@pytest.fixture
def program() -> Program:
    # Tiers kept, promotions off: earning is then amount × tier × VIP, easy to check by hand.
    return load_program().model_copy(update={"promotions": []})


def _rules(harness: BotHarness) -> VipRules:
    rules = harness.services.program.vip_offer
    assert rules is not None
    return rules


def _with_vip(harness: BotHarness, **changes: Any) -> None:
    program: Program = harness.services.program
    assert program.vip is not None
    harness.services.programs.current = program.model_copy(update={"vip": program.vip.model_copy(update=changes)})


async def _join(harness: BotHarness, telegram_id: int = ANN, name: str = "Ann") -> Member:
    await harness.send(harness.user(telegram_id, name), "/start")
    member = await harness.member(telegram_id)
    assert member is not None
    return member


async def _invoice(harness: BotHarness, telegram_id: int = ANN) -> dict[str, Any]:
    calls = await harness.send(harness.user(telegram_id), "/vip")
    [invoice] = [c for c in calls if c.method == "sendInvoice"]
    assert invoice.ok
    return invoice.params


async def _pay(
    harness: BotHarness, charge: str, telegram_id: int = ANN, payload: str | None = None, name: str = "Ann"
) -> list[str]:
    payload = payload or (await _invoice(harness, telegram_id))["payload"]
    update = harness.tg.successful_payment_update(harness.user(telegram_id, name), PRICE, payload, charge_id=charge)
    return harness.texts(await harness.feed(update), telegram_id)


async def _checkout(
    harness: BotHarness, payload: str, telegram_id: int = ANN, amount: int = PRICE, currency: str = "XTR"
) -> dict[str, Any]:
    update = harness.tg.pre_checkout_update(harness.user(telegram_id), amount, payload, currency)
    [answer] = [c for c in await harness.feed(update) if c.method == "answerPreCheckoutQuery"]
    assert answer.ok and answer.params["pre_checkout_query_id"] == update["pre_checkout_query"]["id"]
    return answer.params


async def _count(harness: BotHarness, model: Any) -> int:
    async with harness.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _admin(harness: BotHarness, text: str) -> tuple[list[str], list[Any]]:
    calls = await harness.feed(harness.tg.message_update(harness.user(ADMIN_ID, "Boss"), text))
    return harness.texts(calls, ADMIN_ID), [c for c in calls if c.method == "refundStarPayment"]


# ------------------------------------------------------------------------------------------------ the offer


async def test_vip_shows_terms_then_an_invoice_in_stars_as_the_program_file_says(harness: BotHarness) -> None:
    ann = await _join(harness)
    calls = await harness.send(harness.user(ANN), "/vip")
    assert [c.method for c in calls] == ["sendMessage", "sendInvoice"]  # the terms come before the Pay button
    offer = harness.texts(calls[:1])[0]
    assert "Bean There VIP" in offer and "1.5× points" in offer and "⭐ 250 Stars for 30 days" in offer
    assert "<b>Terms</b>" in offer and "not renewed automatically" in offer and "/paysupport" in offer
    assert "You are VIP until" not in offer
    invoice = calls[1].params
    rules = _rules(harness)
    assert invoice["currency"] == "XTR" and invoice["prices"] == [{"label": "VIP, 30 days", "amount": 250}]
    assert invoice["title"] == "Bean There VIP" and invoice["description"] == rules.benefits
    assert not invoice.get("provider_token") and "max_tip_amount" not in invoice
    assert invoice["reply_markup"]["inline_keyboard"][0][0] == {"text": "Pay ⭐250", "pay": True}
    parsed = vip.parse_payload(invoice["payload"])
    assert parsed == vip.Payload(ann.id or 0, 30, vip.offer_version(rules))
    message = harness.tg.last_message(ANN)
    assert message is not None and message["invoice"]["total_amount"] == 250


async def test_vip_in_chinese_uses_the_program_files_translations(harness: BotHarness) -> None:
    await harness.send(harness.user(ANN, language_code="zh-hans"), "/start")
    calls = await harness.send(harness.user(ANN, language_code="zh-hans"), "/vip")
    invoice = calls[-1].params
    assert invoice["title"] == "Bean There 会员尊享" and invoice["description"].startswith("每笔消费1.5倍积分")
    assert "自付款起有效30天" in harness.texts(calls[:1])[0]


async def test_without_a_vip_section_or_with_it_disabled_vip_is_not_offered(harness: BotHarness) -> None:
    await _join(harness)
    payload = (await _invoice(harness))["payload"]
    _with_vip(harness, enabled=False)
    calls = await harness.send(harness.user(ANN), "/vip")
    assert [c.method for c in calls] == ["sendMessage"]
    assert "not offered" in harness.texts(calls)[0]
    answer = await _checkout(harness, payload)  # an invoice sent before VIP was switched off
    assert answer["ok"] is False and "not offered any more" in answer["error_message"]
    harness.services.programs.current = harness.services.program.model_copy(update={"vip": None})
    calls = await harness.send(harness.user(ANN), "/vip")
    assert [c.method for c in calls] == ["sendMessage"] and "not offered" in harness.texts(calls)[0]


async def test_non_members_are_asked_to_join_first(harness: BotHarness) -> None:
    calls = await harness.send(harness.user(BOB, "Bob"), "/vip")
    assert [c.method for c in calls] == ["sendMessage"] and "not a member yet" in harness.texts(calls)[0]


# ------------------------------------------------------------------------------------------------ checkout


async def test_pre_checkout_is_accepted_for_the_current_offer(harness: BotHarness) -> None:
    await _join(harness)
    payload = (await _invoice(harness))["payload"]
    assert await _checkout(harness, payload) == {
        "pre_checkout_query_id": harness.tg.calls[-1].params["pre_checkout_query_id"],
        "ok": True,
    }
    assert await _count(harness, VipPayment) == 0  # nothing is recorded before the payment itself


async def test_pre_checkout_is_refused_when_the_offer_changed(harness: BotHarness) -> None:
    await _join(harness)
    payload = (await _invoice(harness))["payload"]
    _with_vip(harness, price_stars=300)
    answer = await _checkout(harness, payload, amount=PRICE)
    assert answer["ok"] is False and "offer has changed" in answer["error_message"]
    answer = await _checkout(harness, payload, amount=300)  # the old invoice for the new price: still stale
    assert answer["ok"] is False
    _with_vip(harness, price_stars=PRICE, terms="New terms.")  # same price, other terms: a different offer
    answer = await _checkout(harness, payload)
    assert answer["ok"] is False and "offer has changed" in answer["error_message"]
    # The current offer's invoice passes; a wrong amount, currency or a forged payload does not.
    payload = (await _invoice(harness))["payload"]
    assert (await _checkout(harness, payload))["ok"] is True
    assert (await _checkout(harness, payload, amount=1))["ok"] is False
    assert (await _checkout(harness, payload, currency="USD"))["ok"] is False
    assert (await _checkout(harness, "vip:1:30:nonsense"))["ok"] is False


async def test_pre_checkout_is_refused_for_a_deleted_member_or_someone_elses_invoice(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _join(harness, BOB, "Bob")
    payload = (await _invoice(harness))["payload"]
    answer = await _checkout(harness, payload, telegram_id=BOB)  # Ann's invoice forwarded to Bob
    assert answer["ok"] is False and "not for your membership" in answer["error_message"]
    assert ann.id is not None
    async with harness.sessions() as session:
        await erase(session, ann.id, harness.clock())
    answer = await _checkout(harness, payload)
    assert answer["ok"] is False and "not for your membership" in answer["error_message"]


async def test_pre_checkout_refusals_are_in_the_members_language(harness: BotHarness) -> None:
    await harness.send(harness.user(ANN, language_code="zh-hant"), "/start")
    payload = (await _invoice(harness))["payload"]
    _with_vip(harness, price_stars=300)
    update = harness.tg.pre_checkout_update(harness.user(ANN, language_code="zh-hant"), PRICE, payload)
    [answer] = [c for c in await harness.feed(update) if c.method == "answerPreCheckoutQuery"]
    assert answer.params["ok"] is False and "/vip" in answer.params["error_message"]
    assert "offer has changed" not in answer.params["error_message"]


# ------------------------------------------------------------------------------------------------ payment


async def test_a_payment_delivered_twice_makes_vip_once_and_a_second_one_extends_it(harness: BotHarness) -> None:
    await _join(harness)
    start = harness.clock()
    payload = (await _invoice(harness))["payload"]
    update = harness.tg.successful_payment_update(harness.user(ANN), PRICE, payload, charge_id="stx-1")
    first = harness.texts(await harness.feed(update), ANN)
    again = harness.texts(await harness.feed(update), ANN)  # Telegram delivers the same update again
    assert len(first) == 1 and "Welcome to VIP" in first[0] and "Dec 22, 2026" in first[0]
    assert len(again) == 1 and "already recorded" in again[0] and "Dec 22, 2026" in again[0]
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == start + timedelta(days=30) and member.vip_since == start
    assert await _count(harness, VipPayment) == 1
    # /vip now says until when, and paying again (ten days later) adds the period to the end, not to today.
    harness.clock.advance(days=10)
    calls = await harness.send(harness.user(ANN), "/vip")
    assert "You are VIP until Dec 22, 2026" in harness.texts(calls)[0]
    texts = await _pay(harness, "stx-2")
    assert "extended until Jan 21, 2027" in texts[0]
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == start + timedelta(days=60) and member.vip_since == start
    assert await _count(harness, VipPayment) == 2


async def test_concurrent_deliveries_of_one_payment_count_once(harness: BotHarness) -> None:
    ann = await _join(harness)
    program: Program = harness.services.program
    rules = _rules(harness)
    assert ann.id is not None

    async def deliver(charge: str) -> bool:
        async with harness.sessions() as session:
            result = await vip.record_payment(
                session,
                program,
                telegram_id=ANN,
                charge_id=charge,
                payload=vip.payload_for(ann.id or 0, rules),
                currency="XTR",
                amount=PRICE,
                now=harness.clock(),
            )
            return result.created

    created = await asyncio.gather(*(deliver(f"c-{i % 3}") for i in range(9)))
    assert sum(created) == 3 and await _count(harness, VipPayment) == 3
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == harness.clock() + timedelta(days=90)


async def test_a_payment_after_vip_lapsed_starts_a_new_stretch(harness: BotHarness) -> None:
    await _join(harness)
    await _pay(harness, "stx-1")
    harness.clock.advance(days=40)
    texts = await _pay(harness, "stx-2")
    assert "Welcome to VIP" in texts[0]
    member = await harness.member(ANN)
    assert member is not None and member.vip_since == harness.clock()
    assert member.vip_until == harness.clock() + timedelta(days=30)


# ------------------------------------------------------------------------------------------------ earning


async def test_vip_multiplies_points_with_the_tier_until_it_ends(harness: BotHarness) -> None:
    ann = await _join(harness)
    await harness.purchase(ann.code, "600", "R-1")  # 600 points, Silver (×1.25)
    await _pay(harness, "stx-1")
    await harness.purchase(ann.code, "100", "R-2")  # 100 × 1.25 × 1.5 = 187.5 → 187
    _with_vip(harness, combine="max")
    await harness.purchase(ann.code, "100", "R-3")  # the better of 1.25 and 1.5
    harness.clock.advance(days=30)  # VIP ends exactly now
    await harness.purchase(ann.code, "100", "R-4")  # Silver alone
    async with harness.sessions() as session:
        points = (
            await session.execute(
                select(LedgerEntry.points).where(LedgerEntry.kind == "purchase").order_by(LedgerEntry.id)
            )
        ).scalars()
        assert list(points) == [600, 187, 150, 125]
    calls = await harness.send(harness.user(ANN), "/vip")
    assert "You are VIP until" not in harness.texts(calls)[0]


# ------------------------------------------------------------------------------------------------ scheduler


def _args(harness: BotHarness) -> tuple[Any, ...]:
    return harness.bot, harness.sessions, harness.services.program, harness.dp["i18n"]


async def test_monthly_gift_once_per_thirty_days_of_vip(harness: BotHarness) -> None:
    await _join(harness)
    start = harness.clock()
    gifts = vip_handlers.send_vip_gifts
    assert await gifts(*_args(harness), start) == 0  # not VIP yet
    await _pay(harness, "stx-1")
    await _pay(harness, "stx-2")  # 60 days of VIP
    assert await gifts(*_args(harness), start + timedelta(minutes=15)) == 1
    text = harness.tg.last_text(ANN) or ""
    assert "VIP gift" in text and "100 bonus points" in text and "Your coupon for Free latte" in text
    assert await gifts(*_args(harness), start + timedelta(minutes=30)) == 0
    assert await gifts(*_args(harness), start + timedelta(days=29, hours=23)) == 0
    assert await gifts(*_args(harness), start + timedelta(days=30)) == 1
    assert await gifts(*_args(harness), start + timedelta(days=45)) == 0
    assert await gifts(*_args(harness), start + timedelta(days=60)) == 0  # VIP has ended
    member = await harness.member(ANN)
    assert member is not None and member.points == 50 + 100 + 100
    assert await _count(harness, Coupon) == 2


async def test_every_vip_gets_gifts_and_reminders_however_many_pages_they_fill(
    harness: BotHarness,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vip, "PAGE", 2)  # five members over three pages; claimed ones must not fill a page
    members = [ANN + n for n in range(5)]
    start = harness.clock()
    for n, telegram_id in enumerate(members):
        await _join(harness, telegram_id, f"M{n}")
        await _pay(harness, f"stx-{n}", telegram_id)
    assert await vip_handlers.send_vip_gifts(*_args(harness), start + timedelta(minutes=15)) == 5
    assert await vip_handlers.send_vip_gifts(*_args(harness), start + timedelta(minutes=30)) == 0
    assert await vip_handlers.send_vip_gifts(*_args(harness), start + timedelta(days=30)) == 0  # VIP has ended
    remind = vip_handlers.send_vip_reminders
    assert await remind(*_args(harness), start + timedelta(days=27, hours=1)) == 5
    assert await remind(*_args(harness), start + timedelta(days=28)) == 0


async def test_a_failed_gift_message_is_sent_again_but_given_once(harness: BotHarness) -> None:
    await _join(harness)
    await _pay(harness, "stx-1")
    now = harness.clock() + timedelta(minutes=5)
    harness.tg.fail_next("sendMessage", 500, "Internal Server Error")
    assert await vip_handlers.send_vip_gifts(*_args(harness), now) == 0
    assert await vip_handlers.send_vip_gifts(*_args(harness), now) == 1
    member = await harness.member(ANN)
    assert member is not None and member.points == 50 + 100 and await _count(harness, Coupon) == 1


async def test_reminder_before_vip_ends_and_again_for_a_new_end(harness: BotHarness) -> None:
    await _join(harness)
    start = harness.clock()
    await _pay(harness, "stx-1")  # ends start + 30 days; remind 3 days before
    remind = vip_handlers.send_vip_reminders
    assert await remind(*_args(harness), start + timedelta(days=26, hours=23)) == 0
    assert await remind(*_args(harness), start + timedelta(days=27, hours=1)) == 1
    text = harness.tg.last_text(ANN) or ""
    assert "VIP membership ends on Dec 22, 2026" in text and "/vip" in text
    assert await remind(*_args(harness), start + timedelta(days=28)) == 0
    # Renewing moves the end; the new end gets its own reminder.
    harness.clock.now = start + timedelta(days=28)
    await _pay(harness, "stx-2")
    assert await remind(*_args(harness), start + timedelta(days=29)) == 0
    assert await remind(*_args(harness), start + timedelta(days=57, hours=1)) == 1
    assert "ends on Jan 21, 2027" in (harness.tg.last_text(ANN) or "")
    assert await remind(*_args(harness), start + timedelta(days=61)) == 0  # ended: nothing more


# ------------------------------------------------------------------------------------------------ refunds


async def test_refund_twice_refunds_once_and_ends_vip(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _pay(harness, "stx-1")
    texts, refunds = await _admin(harness, f"/vip_refund {ann.code} stx-1")
    assert [c.params for c in refunds] == [{"user_id": ANN, "telegram_payment_charge_id": "stx-1"}]
    assert refunds[0].ok and "Refunded ⭐250 to Ann" in texts[0] and "Their VIP has ended" in texts[0]
    told = harness.tg.last_text(ANN) or ""
    assert "payment of ⭐250 was refunded" in told and "VIP membership has ended" in told
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == harness.clock()
    texts, refunds = await _admin(harness, f"/vip_refund {ann.code} stx-1")
    assert refunds == [] and "already refunded" in texts[0]
    # No multiplier after a refund, and no gift or reminder either.
    await harness.purchase(ann.code, "100", "R-1")
    member = await harness.member(ANN)
    assert member is not None and member.points == 50 + 100
    assert await vip_handlers.send_vip_gifts(*_args(harness), harness.clock()) == 0
    assert await vip_handlers.send_vip_reminders(*_args(harness), harness.clock()) == 0
    # Telegram's own notice of the refund changes nothing more either.
    calls = await harness.feed(harness.tg.refunded_payment_update(harness.user(ANN), "stx-1"))
    assert harness.texts(calls, ANN) == []
    calls = await harness.send(harness.user(ANN), "/paysupport")
    assert "stx-1</code> (refunded)" in harness.texts(calls)[0]


async def test_refunding_one_of_two_payments_takes_back_its_period(harness: BotHarness) -> None:
    ann = await _join(harness)
    start = harness.clock()
    await _pay(harness, "stx-1")
    await _pay(harness, "stx-2")
    texts, _refunds = await _admin(harness, f"/vip_refund {ann.code} stx-2")
    assert "Their VIP now runs until Dec 22, 2026" in texts[0]
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == start + timedelta(days=30)


async def test_bad_refunds_change_nothing(harness: BotHarness) -> None:
    ann = await _join(harness)
    bob = await _join(harness, BOB, "Bob")
    await _pay(harness, "stx-ann")
    await _pay(harness, "stx-bob", telegram_id=BOB, name="Bob")
    cases = {
        "/vip_refund": "Usage: /vip_refund &lt;member&gt; &lt;charge id&gt;",
        f"/vip_refund {ann.code}": "Usage:",
        f"/vip_refund {ann.code} stx-ann extra": "Usage:",
        f"/vip_refund {ann.code} <b>": "Usage:",
        "/vip_refund NOBODY99 stx-ann": "No member found for NOBODY99",
        f"/vip_refund {ann.code} stx-nope": "No VIP payment with charge id stx-nope",
        f"/vip_refund {ann.code} stx-bob": "Charge stx-bob is another member's payment",
        f"/vip_refund {bob.code} stx-ann": "Charge stx-ann is another member's payment",
    }
    for text, expected in cases.items():
        texts, refunds = await _admin(harness, text)
        assert refunds == [] and expected in texts[0], (text, texts)
    # Not staff enough: a cashier and a member are refused without a word about the payment.
    for user in (harness.user(CASHIER_ID, "Cashier"), harness.user(ANN)):
        calls = await harness.send(user, f"/vip_refund {ann.code} stx-ann")
        assert "only for the shop's staff" in harness.texts(calls)[0]
        assert not harness.tg.calls_of("refundStarPayment")
    async with harness.sessions() as session:
        refunded = (await session.execute(select(func.count()).where(VipPayment.refunded_at.is_not(None)))).scalar()  # type: ignore[union-attr]
    assert refunded == 0
    for telegram_id in (ANN, BOB):
        member = await harness.member(telegram_id)
        assert member is not None and member.vip_until == harness.clock() + timedelta(days=30)


async def test_a_refund_telegram_refuses_changes_nothing(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _pay(harness, "stx-1")
    harness.tg.fail_next("refundStarPayment", 400, "Bad Request: BALANCE_TOO_LOW")
    texts, refunds = await _admin(harness, f"/vip_refund {ann.code} stx-1")
    assert len(refunds) == 1 and "Telegram refused the refund" in texts[0] and "BALANCE_TOO_LOW" in texts[0]
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == harness.clock() + timedelta(days=30)
    texts, refunds = await _admin(harness, f"/vip_refund {ann.code} stx-1")  # trying again works
    assert len(refunds) == 1 and refunds[0].ok and "Refunded" in texts[0]


async def test_a_refund_made_outside_the_bot_is_recorded_once(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _pay(harness, "stx-1")
    update = harness.tg.refunded_payment_update(harness.user(ANN), "stx-1")
    first = harness.texts(await harness.feed(update), ANN)
    again = harness.texts(await harness.feed(update), ANN)
    assert len(first) == 1 and "was refunded" in first[0] and again == []
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == harness.clock()
    # Refunded elsewhere: the admin's refund is refused by the bot, and Telegram is not asked.
    texts, refunds = await _admin(harness, f"/vip_refund {ann.code} stx-1")
    assert refunds == [] and "already refunded" in texts[0]


async def test_a_charge_telegram_already_refunded_is_recorded(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _pay(harness, "stx-1")
    harness.tg.charges["stx-1"]["refunded"] = True  # refunded by Telegram before the bot heard of it
    texts, refunds = await _admin(harness, f"/vip_refund {ann.code} stx-1")
    assert len(refunds) == 1 and not refunds[0].ok and "Refunded ⭐250" in texts[0]
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == harness.clock()


# ------------------------------------------------------------------------------------------------ support


async def test_paysupport_for_anyone_and_the_members_payments(harness: BotHarness) -> None:
    calls = await harness.send(harness.user(BOB, "Bob"), "/paysupport")  # not a member: still answered
    assert "Payment support" in harness.texts(calls)[0] and "/feedback" in harness.texts(calls)[0]
    await _join(harness)
    await _pay(harness, "stx-1")
    calls = await harness.send(harness.user(ANN), "/paysupport")
    text = harness.texts(calls)[0]
    assert "Your latest payments" in text and "⭐250, charge id <code>stx-1</code>" in text
    assert "not renewed automatically" in text


async def test_mydata_includes_vip_payments(harness: BotHarness) -> None:
    ann = await _join(harness)
    await _pay(harness, "stx-1")
    assert ann.id is not None
    from loyalty.privacy import export

    async with harness.sessions() as session:
        data = await export(session, ann.id)
    assert data["vip"]["payments"][0]["charge_id"] == "stx-1" and data["vip"]["until"] is not None


# ------------------------------------------------------------------------------------------------ subscriptions


async def _subscribe_link(harness: BotHarness, telegram_id: int = ANN) -> str:
    """/vip with renew = "subscription": the offer, then a Subscribe button holding a subscription invoice link."""
    calls = await harness.send(harness.user(telegram_id), "/vip")
    assert [c.method for c in calls] == ["sendMessage", "createInvoiceLink", "sendMessage"]
    made = calls[1]
    assert made.ok and made.params["subscription_period"] == 2592000 and made.params["currency"] == "XTR"
    assert made.params["prices"] == [{"label": "VIP, 30 days", "amount": PRICE}]
    [[button]] = calls[2].params["reply_markup"]["inline_keyboard"]
    assert button["text"] == "Subscribe ⭐250" and button["url"] == made.response["result"]
    return str(button["url"])


def _unix(harness: BotHarness) -> int:
    return int(harness.clock().timestamp())


async def test_a_subscription_paid_renewed_twice_cancelled_and_lapsed(harness: BotHarness) -> None:
    _with_vip(harness, renew="subscription")
    await _join(harness)
    start = harness.clock()
    offer = harness.texts(await harness.send(harness.user(ANN), "/vip"))[0]
    assert "renews by itself every 30 days" in offer
    link = await _subscribe_link(harness)
    paid = harness.tg.subscription_payment_update(harness.user(ANN), link, now=_unix(harness), charge_id="sub-1")
    assert "Welcome to VIP" in harness.texts(await harness.feed(paid), ANN)[0]
    assert "already recorded" in harness.texts(await harness.feed(paid), ANN)[0]  # delivered twice: once
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == start + timedelta(days=30)
    assert await _count(harness, VipSubscription) == 1
    calls = await harness.send(harness.user(ANN), "/vip")
    assert [c.method for c in calls] == ["sendMessage", "sendMessage"]  # no new link while subscribed
    assert "renews on Dec 22, 2026" in harness.texts(calls)[1]
    # Nothing to remind a renewing member of.
    remind = vip_handlers.send_vip_reminders
    assert await remind(*_args(harness), start + timedelta(days=27, hours=1)) == 0
    # Two renewals, each delivered twice, each extending VIP once.
    for n, until in ((1, "Jan 21, 2027"), (2, "Feb 20, 2027")):
        harness.clock.now = start + timedelta(days=30 * n)
        renewal = harness.tg.renewal_payment_update(harness.user(ANN), "sub-1", charge_id=f"ren-{n}")
        texts = harness.texts(await harness.feed(renewal), ANN)
        assert len(texts) == 1 and "subscription renewed" in texts[0] and until in texts[0]
        assert "already recorded" in harness.texts(await harness.feed(renewal), ANN)[0]
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == start + timedelta(days=90)
    assert await _count(harness, VipPayment) == 3 and await _count(harness, VipSubscription) == 1
    # Cancel renewal from /vip: Telegram is told with the subscription's first charge id.
    harness.clock.now = start + timedelta(days=70)
    await harness.send(harness.user(ANN), "/vip")
    calls = await harness.press(harness.user(ANN), "Cancel renewal")
    [edit] = [c for c in calls if c.method == "editUserStarSubscription"]
    assert edit.ok and edit.params == {"user_id": ANN, "telegram_payment_charge_id": "sub-1", "is_canceled": True}
    assert [c.params.get("text") for c in calls if c.method == "answerCallbackQuery"] == ["Renewal cancelled."]
    assert "will not renew" in (harness.tg.last_text(ANN) or "")
    with pytest.raises(ValueError, match="cancelled"):
        harness.tg.renewal_payment_update(harness.user(ANN), "sub-1")
    # The same press replayed (an old message's button) asks Telegram nothing and changes nothing.
    message = harness.tg.last_message(ANN)
    assert message is not None
    replay = harness.tg.callback_update(harness.user(ANN), message, "viprenew:0")
    calls = await harness.feed(replay)
    assert [c.method for c in calls] == ["answerCallbackQuery"] and "already cancelled" in calls[0].params["text"]
    # Renew again, then cancel for good.
    calls = await harness.press(harness.user(ANN), "Renew again")
    assert [c.params["is_canceled"] for c in calls if c.method == "editUserStarSubscription"] == [False]
    assert "renews on Feb 20, 2027" in (harness.tg.last_text(ANN) or "")
    await harness.press(harness.user(ANN), "Cancel renewal")
    async with harness.sessions() as session:
        status = await vip.status_of(session, (await _join(harness)).id or 0, harness.clock())
    assert status.subscription is not None and not status.renews
    # Cancelled: the usual reminder, then the end of VIP is told once.
    assert await remind(*_args(harness), start + timedelta(days=87, hours=1)) == 1
    lapses = vip_handlers.send_vip_lapses
    assert await lapses(*_args(harness), start + timedelta(days=89)) == 0  # still VIP
    assert await lapses(*_args(harness), start + timedelta(days=90, minutes=15)) == 1
    assert "renewal was cancelled" in (harness.tg.last_text(ANN) or "")
    assert await lapses(*_args(harness), start + timedelta(days=90, minutes=30)) == 0
    harness.clock.now = start + timedelta(days=91)
    await _subscribe_link(harness)  # a new subscription, after the old one ended


async def test_a_renewal_that_does_not_arrive_ends_vip_and_the_member_is_told_once(harness: BotHarness) -> None:
    _with_vip(harness, renew="subscription")
    await _join(harness)
    await _join(harness, BOB, "Bob")
    start = harness.clock()
    link = await _subscribe_link(harness)
    await harness.feed(harness.tg.subscription_payment_update(harness.user(ANN), link, now=_unix(harness)))
    bob_payload = vip.payload_for((await _join(harness, BOB, "Bob")).id or 0, _rules(harness))
    await _pay(harness, "one-off", BOB, bob_payload, "Bob")  # a one-off payment: its end is no lapse
    lapses = vip_handlers.send_vip_lapses
    assert await lapses(*_args(harness), start + timedelta(days=29)) == 0
    since = len(harness.tg.calls)
    assert await lapses(*_args(harness), start + timedelta(days=30, hours=1)) == 1
    told = harness.texts(harness.tg.calls[since:])
    assert len(told) == 1 and "did not renew" in told[0] and "/vip" in told[0]
    assert harness.texts(harness.tg.calls[since:], BOB) == []
    assert await lapses(*_args(harness), start + timedelta(days=30, hours=2)) == 0
    member = await harness.member(ANN)
    assert member is not None and not vip.is_vip(member.vip_until, start + timedelta(days=30, hours=1))
    # No cancelling a subscription that is over.
    harness.clock.now = start + timedelta(days=31)
    message = harness.tg.last_message(ANN)
    assert message is not None
    calls = await harness.feed(harness.tg.callback_update(harness.user(ANN), message, "viprenew:0"))
    assert [c.method for c in calls] == ["answerCallbackQuery"] and "no VIP subscription" in calls[0].params["text"]


async def test_a_renewal_is_refunded_like_a_one_off_payment(harness: BotHarness) -> None:
    _with_vip(harness, renew="subscription")
    ann = await _join(harness)
    start = harness.clock()
    link = await _subscribe_link(harness)
    await harness.feed(
        harness.tg.subscription_payment_update(harness.user(ANN), link, now=_unix(harness), charge_id="sub-1")
    )
    harness.clock.now = start + timedelta(days=30)
    await harness.feed(harness.tg.renewal_payment_update(harness.user(ANN), "sub-1", charge_id="ren-1"))
    before = len(harness.tg.calls)
    texts, refunds = await _admin(harness, f"/vip_refund {ann.code} ren-1")
    assert [c.params for c in refunds] == [{"user_id": ANN, "telegram_payment_charge_id": "ren-1"}] and refunds[0].ok
    assert "Their VIP has ended. Their subscription will not renew." in texts[0]
    # What was refunded is not charged again: the subscription is cancelled with Telegram, and stays cancelled.
    [cancel] = harness.tg.calls_of("editUserStarSubscription")[-1:]
    assert harness.tg.calls.index(cancel) >= before and cancel.ok
    assert cancel.params == {"user_id": ANN, "telegram_payment_charge_id": "sub-1", "is_canceled": True}
    with pytest.raises(ValueError, match="cancelled"):
        harness.tg.renewal_payment_update(harness.user(ANN), "sub-1")
    member = await harness.member(ANN)
    assert member is not None and member.vip_until == harness.clock()
    texts, refunds = await _admin(harness, f"/vip_refund {ann.code} ren-1")
    assert refunds == [] and "already refunded" in texts[0]


async def test_subscription_texts_in_chinese(harness: BotHarness) -> None:
    _with_vip(harness, renew="subscription")
    user = harness.user(ANN, language_code="zh-hant")
    await harness.send(user, "/start")
    calls = await harness.send(user, "/vip")
    [[button]] = calls[-1].params["reply_markup"]["inline_keyboard"]
    assert "訂閱" in button["text"] and "每30天" in (calls[-1].params["text"])


# ------------------------------------------------------------------------------------------------ program file


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('price_stars = 0\nbenefits = "b"\nterms = "t"', "vip.price_stars"),
        ('price_stars = 10\nbenefits = "b"\nterms = "t"\ncombine = "add"', "vip.combine"),
        ('price_stars = 10\nbenefits = "b"\nterms = "t"\nmonthly_reward = "nope"', "vip.monthly_reward 'nope'"),
        ('price_stars = 10\nbenefits = "b"\nterms = "t"\nperiod_days = 3\nreminder_days = 3', "reminder_days"),
        ('price_stars = 10\nbenefits = "b"\nterms = "t"\ntitle = "' + "x" * 33 + '"', "vip.title"),
        ('price_stars = 10\nterms = "t"', "vip.benefits"),
        ('price_stars = 10\nbenefits = "b"\nterms = "t"\nrenew = "monthly"', "vip.renew"),
        (
            'price_stars = 10\nbenefits = "b"\nterms = "t"\nrenew = "subscription"\nperiod_days = 31',
            "period_days must be 30",
        ),
    ],
)
def test_invalid_vip_sections_name_the_key(section: str, message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        parse_program(f'name = "Cafe"\n[vip]\n{section}\n')


def test_vip_is_off_without_a_section_and_the_example_offers_it() -> None:
    assert parse_program('name = "Cafe"').vip_offer is None
    assert (
        parse_program('name = "Cafe"\n[vip]\nenabled = false\nprice_stars = 5\nbenefits = "b"\nterms = "t"').vip_offer
        is None
    )
    rules = load_program().vip_offer
    assert rules is not None and rules.price_stars == PRICE and rules.multiplier == Decimal("1.5")


async def test_erasing_ones_data_cancels_a_renewing_subscription(harness: BotHarness) -> None:
    _with_vip(harness, renew="subscription")
    await _join(harness)
    link = await _subscribe_link(harness)
    await harness.feed(
        harness.tg.subscription_payment_update(harness.user(ANN), link, now=_unix(harness), charge_id="sub-9")
    )
    ann = harness.user(ANN)
    await harness.send(ann, "/deleteme")
    calls = await harness.press(ann, "🗑 Yes, erase my data")
    [cancel] = [c for c in calls if c.method == "editUserStarSubscription"]
    assert cancel.ok and cancel.params == {"user_id": ANN, "telegram_payment_charge_id": "sub-9", "is_canceled": True}
    with pytest.raises(ValueError, match="cancelled"):  # Telegram charges nothing after they left
        harness.tg.renewal_payment_update(ann, "sub-9")
