"""Referrals end to end: the link, the full path with a qualifying purchase, every fraud case, caps, bursts."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from loyalty.program import Program, ReferralRules, load_program
from storage.models import LedgerEntry, Member, Referral
from tests.harness import SUPPORT_CHAT_ID, SUPPORT_ID, BotHarness

RULES = ReferralRules(friend_bonus=50, referrer_bonus=100, qualifying_amount=Decimal(30), monthly_cap=2, burst_limit=3)


@pytest.fixture
def program() -> Program:
    return load_program().model_copy(update={"referrals": RULES})


async def _join(harness: BotHarness, telegram_id: int, name: str, payload: str = "") -> Member:
    await harness.send(harness.user(telegram_id, name), f"/start {payload}".strip())
    member = await harness.member(telegram_id)
    assert member is not None
    return member


async def _referral_points(harness: BotHarness, member_id: int) -> int:
    """Net referral points: bonuses paid less any taken back by refunds."""
    async with harness.sessions() as session:
        total = await session.execute(
            select(func.coalesce(func.sum(col(LedgerEntry.points)), 0)).where(
                col(LedgerEntry.member_id) == member_id, col(LedgerEntry.idempotency_key).startswith("referral")
            )
        )
        return int(total.scalar_one())


async def test_refer_shows_a_short_personal_link_with_a_share_button_and_stats(harness: BotHarness) -> None:
    ann = await _join(harness, 1001, "Ann")
    calls = await harness.send(harness.user(1001, "Ann"), "/refer")
    message = calls[-1].params
    link = f"https://t.me/{harness.tg.me['username']}?start=ref_{ann.code}"
    assert link in message["text"]
    assert len(f"ref_{ann.code}") <= 64
    assert "Invited: 0 · Joined: 0 · Qualified: 0 · Points earned: 0" in message["text"]
    assert "100 points when they make their first purchase of CN¥30.00 or more" in message["text"]
    share = message["reply_markup"]["inline_keyboard"][0][0]["url"]
    query = parse_qs(urlsplit(share).query)
    assert share.startswith("https://t.me/share/url?") and query["url"] == [link]
    assert "Bean There Coffee" in query["text"][0]


async def test_full_referral_path_pays_the_referrer_only_for_a_qualifying_purchase(harness: BotHarness) -> None:
    ann = await _join(harness, 1001, "Ann")
    calls = await harness.send(harness.user(1002, "Bob"), f"/start ref_{ann.code}")
    bob = await harness.member(1002)
    assert bob is not None and bob.referred_by_id == ann.id
    assert bob.points == 50 + 50  # welcome + friend's bonus on joining
    assert any("bonus points for joining through Ann's invitation" in t for t in harness.texts(calls, 1002))
    assert any("Bob joined through your link" in t for t in harness.texts(calls, 1001))
    assert (await harness.member(1001)).points == 50  # type: ignore[union-attr]  # nothing for the join alone

    # Below the qualifying amount: recorded, earns its points, pays no referral.
    calls = await harness.purchase(bob.code, "20", "R-1")
    assert harness.texts(calls, 1001) == []
    assert await _referral_points(harness, ann.id or 0) == 0

    calls = await harness.purchase(bob.code, "35", "R-2")
    assert any("Bob made their first purchase: you earned 100 referral points" in t for t in harness.texts(calls, 1001))
    assert (await harness.member(1001)).points == 150  # type: ignore[union-attr]

    # A replayed purchase and a later purchase pay nothing more.
    await harness.purchase(bob.code, "35", "R-2")
    calls = await harness.purchase(bob.code, "80", "R-3")
    assert harness.texts(calls, 1001) == []
    assert await _referral_points(harness, ann.id or 0) == 100
    assert await _referral_points(harness, bob.id or 0) == 50

    calls = await harness.send(harness.user(1001, "Ann"), "/refer")
    assert "Invited: 1 · Joined: 1 · Qualified: 1 · Points earned: 100" in calls[-1].params["text"]


async def test_fraud_cases_link_nothing_and_pay_nothing(harness: BotHarness) -> None:
    ann = await _join(harness, 1001, "Ann")
    carl = await _join(harness, 1003, "Carl")
    bob = await _join(harness, 1002, "Bob", f"ref_{ann.code}")

    # Self-referral.
    calls = await harness.send(harness.user(1001, "Ann"), f"/start ref_{ann.code}")
    assert "your own invitation link" in harness.texts(calls, 1001)[0]
    # An existing member following someone's link.
    calls = await harness.send(harness.user(1003, "Carl"), f"/start ref_{ann.code}")
    assert "Invitation links are for new members" in harness.texts(calls, 1003)[0]
    # A loop: Bob was invited by Ann; Ann following Bob's link links nothing.
    calls = await harness.send(harness.user(1001, "Ann"), f"/start ref_{bob.code}")
    assert "Invitation links are for new members" in harness.texts(calls, 1001)[0]
    assert harness.texts(calls, 1002) == []
    # Unknown, malformed and forged payloads: the newcomer joins, linked to nobody.
    for offset, payload in enumerate(["ref_ZZZZZZZZ", "ref_" + "A" * 196, "ref_<b>x</b>", "ref_"]):
        calls = await harness.send(harness.user(2000 + offset, "Guest"), f"/start {payload}")
        texts = harness.texts(calls, 2000 + offset)
        assert "Welcome to" in texts[0] and "invitation link is not valid" in texts[0]
    assert len(f"/start ref_{'A' * 196}") > 200

    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Referral))).scalar_one() == 1
        members = (await session.execute(select(Member))).scalars().all()
    by_id = {m.telegram_id: m for m in members}
    assert by_id[1001].referred_by_id is None and by_id[1003].referred_by_id is None
    assert all(by_id[2000 + i].referred_by_id is None and by_id[2000 + i].points == 50 for i in range(4))
    assert by_id[1001].points == 50 and by_id[1003].points == 50 and carl.points == 50
    assert await _referral_points(harness, ann.id or 0) == 0
    # Ann's stats count the visits of Bob and Carl, not her own.
    calls = await harness.send(harness.user(1001, "Ann"), "/refer")
    assert "Invited: 2 · Joined: 1 · Qualified: 0" in calls[-1].params["text"]


async def test_monthly_cap_limits_paid_referrals_and_a_new_month_pays_again(harness: BotHarness) -> None:
    ann = await _join(harness, 1001, "Ann")
    friends = [await _join(harness, 1100 + i, f"F{i}", f"ref_{ann.code}") for i in range(3)]
    for i, friend in enumerate(friends[:2]):
        await harness.purchase(friend.code, "30", f"C-{i}")
    calls = await harness.purchase(friends[2].code, "30", "C-2")
    assert any("reached this month's limit of 2 paid referrals" in t for t in harness.texts(calls, 1001))
    assert await _referral_points(harness, ann.id or 0) == 200

    harness.clock.advance(days=9)  # 2026-12-01 in Shanghai: a new month
    late = await _join(harness, 1200, "Late", f"ref_{ann.code}")
    calls = await harness.purchase(late.code, "30", "C-3")
    assert any("you earned 100 referral points" in t for t in harness.texts(calls, 1001))
    assert await _referral_points(harness, ann.id or 0) == 300
    # The capped friend stays capped: no retroactive payment.
    await harness.purchase(friends[2].code, "50", "C-4")
    assert await _referral_points(harness, ann.id or 0) == 300


async def test_a_burst_of_joins_is_held_for_staff_review(harness: BotHarness) -> None:
    ann = await _join(harness, 1001, "Ann")
    for i in range(3):
        await _join(harness, 1100 + i, f"F{i}", f"ref_{ann.code}")
    harness.tg.clear()
    held = await _join(harness, 1103, "Held", f"ref_{ann.code}")
    assert held.points == 50  # welcome only; the friend's bonus waits for review
    reviews = harness.texts(harness.tg.calls, SUPPORT_CHAT_ID)
    assert len(reviews) == 1 and "Referral held for review" in reviews[0] and held.code in reviews[0]
    assert "being checked" in harness.texts(harness.tg.calls, 1103)[0]
    review_id = harness.tg.last_message(SUPPORT_CHAT_ID)["message_id"]  # type: ignore[index]
    rejected = await _join(harness, 1104, "Reject", f"ref_{ann.code}")

    # A member pressing the staff button is refused and changes nothing.
    calls = await harness.press(
        harness.user(1002, "Mallory"), "✅ Approve", chat_id=SUPPORT_CHAT_ID, message_id=review_id
    )
    assert calls[-1].method == "answerCallbackQuery" and "Only the shop's staff" in calls[-1].params["text"]
    assert (await harness.member(1103)).points == 50  # type: ignore[union-attr]

    staff = harness.user(SUPPORT_ID, "Sue")
    calls = await harness.press(staff, "✅ Approve", chat_id=SUPPORT_CHAT_ID, message_id=review_id)
    assert any("bonus points for joining" in t for t in harness.texts(calls, 1103))
    assert (await harness.member(1103)).points == 100  # type: ignore[union-attr]
    edited = harness.tg.find_message(SUPPORT_CHAT_ID, review_id)
    assert edited is not None and "Approved by Sue" in edited["text"] and "reply_markup" not in edited
    # A repeated approval (a double tap, or a second moderator) pays once.
    replay = await harness.feed(harness.tg.callback_update(staff, edited, _approve_data(harness, review_id)))
    assert "Already decided" in replay[-1].params["text"]
    assert (await harness.member(1103)).points == 100  # type: ignore[union-attr]

    calls = await harness.press(harness.user(9001, "Admin"), "❌ Reject", chat_id=SUPPORT_CHAT_ID)
    assert (await harness.member(1104)).points == 50  # type: ignore[union-attr]
    # The rejected friend's qualifying purchase pays nobody; the approved one's pays the referrer.
    before = await _referral_points(harness, ann.id or 0)
    await harness.purchase(rejected.code, "40", "B-1")
    assert await _referral_points(harness, ann.id or 0) == before
    await harness.purchase(held.code, "40", "B-2")
    assert await _referral_points(harness, ann.id or 0) == before + 100

    # An hour later the link is no longer bursting.
    harness.clock.advance(hours=1, minutes=1)
    later = await _join(harness, 1105, "Later", f"ref_{ann.code}")
    assert later.points == 100


def _approve_data(harness: BotHarness, message_id: int) -> str:
    """The Approve button's callback data as it was sent with the review request."""
    for call in harness.tg.calls:
        if (
            call.method == "sendMessage"
            and call.params.get("chat_id") == SUPPORT_CHAT_ID
            and call.ok
            and call.response["result"]["message_id"] == message_id
        ):
            return str(call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"])
    raise AssertionError("no review request")


async def test_friend_bonus_on_first_purchase(harness: BotHarness, program: Program) -> None:
    harness.services.programs.current = program.model_copy(
        update={"referrals": RULES.model_copy(update={"friend_bonus_on": "first_purchase"})}
    )
    ann = await _join(harness, 1001, "Ann")
    calls = await harness.send(harness.user(1002, "Bob"), f"/start ref_{ann.code}")
    assert "your first purchase of CN¥30.00 or more earns you 50 bonus points" in harness.texts(calls, 1002)[0]
    bob = await harness.member(1002)
    assert bob is not None and bob.points == 50
    calls = await harness.purchase(bob.code, "30", "F-1")
    assert any("bonus points for joining through Ann's invitation" in t for t in harness.texts(calls, 1002))
    assert (await harness.member(1002)).points == 50 + 30 + 50  # type: ignore[union-attr]
    assert (await harness.member(1001)).points == 150  # type: ignore[union-attr]


async def test_a_referrer_who_blocked_the_bot_is_paid_but_not_messaged(harness: BotHarness) -> None:
    ann = await _join(harness, 1001, "Ann")
    await harness.feed(harness.tg.my_chat_member_update(harness.user(1001, "Ann"), "kicked"))
    bob = await _join(harness, 1002, "Bob", f"ref_{ann.code}")
    calls = await harness.purchase(bob.code, "30", "K-1")
    assert harness.texts(calls, 1001) == []
    assert (await harness.member(1001)).points == 150  # type: ignore[union-attr]


async def test_refunding_the_qualifying_purchase_takes_the_bonus_back_and_a_new_purchase_requalifies(
    harness: BotHarness,
) -> None:
    ann = await _join(harness, 1001, "Ann")
    bob = await _join(harness, 1002, "Bob", f"ref_{ann.code}")
    await harness.purchase(bob.code, "40", "Q-1")
    assert await _referral_points(harness, ann.id or 0) == 100
    admin = harness.user(9001, "Admin")
    await harness.send(admin, "/refund Q-1 5")  # still ¥35 left: still qualifies
    assert await _referral_points(harness, ann.id or 0) == 100
    await harness.send(admin, "/refund Q-1 10")  # ¥25 left: below ¥30
    assert await _referral_points(harness, ann.id or 0) == 0
    assert (await harness.member(1001)).points == 50  # type: ignore[union-attr]
    calls = await harness.send(harness.user(1001, "Ann"), "/refer")
    assert "Joined: 1 · Qualified: 0 · Points earned: 0" in calls[-1].params["text"]
    # A real purchase later qualifies again, and pays once.
    await harness.purchase(bob.code, "30", "Q-2")
    await harness.purchase(bob.code, "30", "Q-3")
    assert await _referral_points(harness, ann.id or 0) == 100
