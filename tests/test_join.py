"""Joining with /start: once, with a welcome bonus once, referral payloads, escaping, languages."""

from __future__ import annotations

from sqlalchemy import func, select

from loyalty.codes import CODE_RE
from loyalty.members import map_language
from loyalty.referrals import referral_code
from storage.models import LedgerEntry, Member
from tests.harness import BotHarness


async def _member(harness: BotHarness, telegram_id: int) -> Member | None:
    async with harness.sessions() as session:
        return (await session.execute(select(Member).where(Member.telegram_id == telegram_id))).scalar_one_or_none()


async def test_join_registers_once_and_pays_the_welcome_bonus_once(harness: BotHarness) -> None:
    ann = harness.user(1001, "Ann")
    calls = await harness.send(ann, "/start")
    [text] = harness.texts(calls, 1001)
    assert "Welcome to <b>Bean There Coffee</b>, Ann!" in text and "50 welcome points" in text
    reply = calls[-1].params
    assert "keyboard" in reply["reply_markup"], "the main menu keyboard is shown"

    calls = await harness.send(ann, "/start")
    assert "Welcome back" in harness.texts(calls, 1001)[0] and "50 points" in harness.texts(calls, 1001)[0]
    member = await _member(harness, 1001)
    assert member is not None and member.points == 50 and CODE_RE.match(member.code)
    async with harness.sessions() as session:
        assert (await session.execute(select(func.count()).select_from(Member))).scalar_one() == 1
        assert (await session.execute(select(func.count()).select_from(LedgerEntry))).scalar_one() == 1


async def test_redelivered_start_update_changes_nothing(harness: BotHarness) -> None:
    ann = harness.user(1001, "Ann")
    update = harness.tg.message_update(ann, "/start")
    await harness.feed(update)
    await harness.feed(update)
    member = await _member(harness, 1001)
    assert member is not None and member.points == 50


async def test_referral_link_records_the_referrer(harness: BotHarness) -> None:
    await harness.send(harness.user(1001, "Ann"), "/start")
    ann = await _member(harness, 1001)
    assert ann is not None
    await harness.send(harness.user(1002, "Bob"), f"/start ref_{ann.code}")
    bob = await _member(harness, 1002)
    assert bob is not None and bob.referred_by_id == ann.id


async def test_bad_referral_payloads_are_ignored_without_error(harness: BotHarness) -> None:
    await harness.send(harness.user(1001, "Ann"), "/start")
    ann = await _member(harness, 1001)
    assert ann is not None
    payloads = [
        "ref_",
        "ref_ZZZZZZZZ",
        "ref_0O1I0O1I",
        "garbage",
        "ref_" + "A" * 200,
        "ref_<b>x</b>",
        "REF_" + ann.code,
    ]
    for offset, payload in enumerate(payloads):
        user_id = 2000 + offset
        calls = await harness.send(harness.user(user_id, "Guest"), f"/start {payload}")
        assert "Welcome to" in harness.texts(calls, user_id)[0]
        guest = await _member(harness, user_id)
        assert guest is not None and guest.referred_by_id is None and guest.points == 50
    # An existing member following their own (or anyone's) link is not re-linked.
    await harness.send(harness.user(1001, "Ann"), f"/start ref_{ann.code}")
    ann_again = await _member(harness, 1001)
    assert ann_again is not None and ann_again.referred_by_id is None


async def test_names_are_escaped(harness: BotHarness) -> None:
    calls = await harness.send(harness.user(1003, "<b>Tom & Jerry</b>"), "/start")
    text = harness.texts(calls, 1003)[0]
    assert "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in text
    calls = await harness.send(harness.user(1003, "<b>Tom & Jerry</b>"), "/card")
    assert "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;" in harness.texts(calls, 1003)[0]


async def test_language_comes_from_telegram_then_from_the_choice(harness: BotHarness) -> None:
    calls = await harness.send(harness.user(1004, "李", language_code="zh-hans"), "/start")
    assert "欢迎" in harness.texts(calls, 1004)[0]
    calls = await harness.send(harness.user(1005, "陳", language_code="zh-hant"), "/start")
    assert "歡迎" in harness.texts(calls, 1005)[0]


def test_language_mapping() -> None:
    assert map_language("zh") == "zh-Hans"
    assert map_language("zh-CN") == "zh-Hans"
    assert map_language("zh-hans") == "zh-Hans"
    assert map_language("zh-TW") == "zh-Hant"
    assert map_language("zh-hk") == "zh-Hant"
    assert map_language("en-US") == "en"
    assert map_language("fr") == "en"
    assert map_language(None) == "en"


def test_referral_code_parsing() -> None:
    assert referral_code("ref_ABCD2345") == "ABCD2345"
    assert referral_code("ref_abcd2345") == "ABCD2345"
    assert referral_code("ref_ABCD234") is None
    assert referral_code("ref_ABCD0345") is None
    assert referral_code("ABCD2345") is None
    assert referral_code(None) is None
