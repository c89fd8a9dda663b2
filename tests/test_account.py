"""A member's side: /balance with expiring points, /history paging, /card, /language, /help, the menu."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from loyalty import ledger
from loyalty.account import summary
from loyalty.ledger import Kind
from loyalty.members import identify
from loyalty.roles import Role, StaticRoles
from storage.database import PreparedRead
from storage.models import Member
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness


async def _join(harness: BotHarness, user_id: int = 1001, language: str = "en") -> Member:
    await harness.send(harness.user(user_id, "Ann", language_code=language), "/start")
    async with harness.sessions() as session:
        return (await session.execute(select(Member).where(Member.telegram_id == user_id))).scalar_one()


async def test_balance_shows_points_lifetime_and_what_expires_soon(harness: BotHarness) -> None:
    member = await _join(harness)
    assert member.id is not None
    now = harness.clock()
    async with harness.sessions() as session:
        await ledger.credit(session, member.id, 40, kind=Kind.PURCHASE, now=now, expires_at=now + timedelta(days=10))
        await ledger.credit(session, member.id, 30, kind=Kind.PURCHASE, now=now, expires_at=now + timedelta(days=20))
        await session.commit()
    [text] = harness.texts(await harness.send(harness.user(1001), "/balance"))
    assert "<b>120</b> points" in text and "Earned since joining: 120" in text
    assert "Next to expire: 40 points on Dec 2, 2026." in text
    assert "70 points expire in the next 30 days in all." in text

    harness.clock.advance(days=15)
    [text] = harness.texts(await harness.send(harness.user(1001), "/balance"))
    assert "<b>80</b> points" in text and "Next to expire: 30 points on Dec 12, 2026." in text


async def test_balance_without_expiring_points(harness: BotHarness) -> None:
    await _join(harness)
    [text] = harness.texts(await harness.send(harness.user(1001), "/balance"))
    assert "No points expire in the next 30 days" in text


async def test_balance_summary_adds_up_and_reads_asked_for_together_keep_their_own_member(
    harness: BotHarness,
) -> None:
    member = await _join(harness)
    other = await _join(harness, 1002)
    assert member.id is not None and other.id is not None
    await harness.purchase(member.code, "88.50", "r-1")  # tier spend, a stamp, an earned lot
    now = harness.clock()
    async with harness.sessions() as session:
        await ledger.credit(session, member.id, 40, kind=Kind.ADJUST, now=now, expires_at=now + timedelta(days=10))
        await session.commit()
    program = harness.services.program

    async def read(member_id: int) -> Any:
        async with harness.sessions() as session:
            return await summary(session, program, member_id, None, now, 30)

    # Asked for together (on PostgreSQL one statement for both), each gets its own member's row.
    direct, theirs = await asyncio.gather(read(member.id), read(other.id))
    stored = await harness.member(1001)
    assert stored is not None and direct.balance.points == stored.points > 50 + 40
    assert direct.balance.expiring_points == 40 and theirs.balance.points == 50 and theirs.balance.expiring_points == 0
    assert direct.tier is not None and direct.tier.missing > 0 and [card.stamps for card in direct.cards] == [1]
    async with harness.sessions() as session:
        assert await identify(session, StaticRoles(), 999_999) == (None, Role.MEMBER)


@pytest.mark.parametrize("button", [False, True])
async def test_balance_reads_the_database_twice_through_prepared_reads(
    harness: BotHarness, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, button: bool
) -> None:
    """Who sent /balance, then everything it shows: two prepared reads (no SQLAlchemy statement compiled per
    update). Reading both in one statement bought under 10% on either database (issue 17), so it was dropped."""
    await _join(harness, language="zh-hant")
    label = "⭐ 積分餘額" if button else "/balance"
    reads: list[PreparedRead] = []
    real_first = PreparedRead.first

    async def counted(read: PreparedRead, session: AsyncSession, params: Any) -> Any:
        reads.append(read)
        return await real_first(read, session, params)

    monkeypatch.setattr(PreparedRead, "first", counted)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        [text] = harness.texts(await harness.send(harness.user(1001, language_code="zh-hant"), label))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert "<b>50</b> 點積分" in text  # the welcome bonus
    assert len(reads) == 2 and statements == []


async def test_history_pages_with_buttons(harness: BotHarness) -> None:
    member = await _join(harness)
    cashier = harness.user(CASHIER_ID, "Cass")
    for index in range(12):
        harness.clock.advance(minutes=1)
        await harness.send(cashier, f"/purchase {member.code} {index + 1}")
    ann = harness.user(1001)
    [text] = harness.texts(await harness.send(ann, "/history"))
    assert "page 1 of 2" in text and text.count("Purchase") == 10 and "<b>+12</b>" in text
    calls = await harness.press(ann, "Older ▶")
    edit = next(call for call in calls if call.method == "editMessageText")
    assert "page 2 of 2" in edit.params["text"] and "Welcome bonus" in edit.params["text"]
    assert any(call.method == "answerCallbackQuery" for call in calls)
    # A replayed or double tap changes nothing and raises nothing.
    message = harness.tg.last_message(1001)
    assert message is not None
    calls = await harness.feed(harness.tg.callback_update(ann, message, "hist:1"))
    assert any(call.method == "answerCallbackQuery" for call in calls)
    calls = await harness.press(ann, "◀ Newer")
    assert "page 1 of 2" in next(c for c in calls if c.method == "editMessageText").params["text"]
    # Forged callback data is answered without error.
    for forged in ("hist:999", "hist:-1", "hist:x", "lang:xx"):
        calls = await harness.feed(harness.tg.callback_update(ann, message, forged))
        assert all("something went wrong" not in (c.params.get("text") or "") for c in calls)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "en",
            ["Refund of receipt R-1", "Referral bonus", "Shared content approved", "Birthday gift", "Redeemed (Latte)"],
        ),
        ("zh-hans", ["收据 R-1 退款", "推荐奖励", "分享内容已通过", "生日礼物", "已兑换（Latte）"]),
        ("zh-hant", ["收據 R-1 退款", "推薦獎勵", "分享內容已通過", "生日禮物", "已兌換（Latte）"]),
    ],
)
async def test_history_says_what_each_entry_was_in_the_members_language(
    harness: BotHarness, language: str, expected: list[str]
) -> None:
    member = await _join(harness, language=language)
    assert member.id is not None
    now = harness.clock()
    async with harness.sessions() as session:
        for kind, points, reason in [
            (Kind.REFUND, -10, "refund R-1"),
            (Kind.REFERRAL, 100, None),
            (Kind.REFERRAL, -100, "referral refunded"),
            (Kind.SHARE, 30, None),
            (Kind.PROFILE, 20, None),
            (Kind.BIRTHDAY, 50, None),
            (Kind.WINBACK, 40, None),
            (Kind.VIP, 60, None),
            (Kind.SPEND, -5, "Latte"),
        ]:
            if points > 0:
                await ledger.credit(session, member.id, points, kind=kind, now=now, expires_at=None, reason=reason)
            else:
                await ledger.debit(session, member.id, -points, kind=kind, now=now, reason=reason)
        await session.commit()
    [text] = harness.texts(await harness.send(harness.user(1001, language_code=language), "/history"))
    for phrase in expected:
        assert phrase in text, phrase
    for raw in ("· refund", "· referral", "· share", "· profile", "· birthday", "· winback", "· vip", "· spend"):
        assert raw not in text, raw


async def test_history_when_empty(harness: BotHarness) -> None:
    from loyalty.program import Program

    harness.services.programs.current = Program(name="No Bonus")
    await _join(harness)
    [text] = harness.texts(await harness.send(harness.user(1001), "/history"))
    assert text == "No points history yet."


async def test_card_has_code_and_qr(harness: BotHarness) -> None:
    member = await _join(harness)
    calls = await harness.send(harness.user(1001), "/card")
    [photo] = [call for call in calls if call.method == "sendPhoto"]
    assert member.code in photo.params["caption"]
    [png] = photo.files.values()
    assert png.startswith(b"\x89PNG")


async def test_a_card_shown_again_is_sent_by_its_file_id_not_uploaded_again(harness: BotHarness) -> None:
    await _join(harness)
    ann = harness.user(1001)
    [first] = [c for c in await harness.send(ann, "/card") if c.method == "sendPhoto"]
    assert first.files, "the first time the picture is uploaded"
    uploaded = harness.tg.last_message(1001)["photo"][-1]["file_id"]
    [again] = [c for c in await harness.send(ann, "/card") if c.method == "sendPhoto"]
    assert again.params["photo"] == uploaded and not again.files
    # Telegram forgot the file (say, the bot's files were reset): the card is uploaded again, not lost.
    harness.tg.fail_next("sendPhoto", 400, "Bad Request: wrong file identifier/HTTP URL specified")
    calls = [c for c in await harness.send(ann, "/card") if c.method == "sendPhoto"]
    assert [bool(c.files) for c in calls] == [False, True]
    assert harness.tg.last_message(1001)["caption"].startswith("💳")


async def test_menu_buttons_work_in_any_language(harness: BotHarness) -> None:
    await _join(harness)
    ann = harness.user(1001)
    assert "points" in harness.texts(await harness.send(ann, "⭐ Balance"))[0]
    await harness.send(ann, "/language")
    await harness.press(ann, "简体中文")
    # The old English keyboard still works after switching.
    assert "积分" in harness.texts(await harness.send(ann, "⭐ Balance"))[0]
    [photo] = [c for c in await harness.send(ann, "💳 My card") if c.method == "sendPhoto"]
    assert "会员" in photo.params["caption"]


async def test_language_switch_changes_every_later_reply(harness: BotHarness) -> None:
    await _join(harness)
    ann = harness.user(1001)
    calls = await harness.send(ann, "/language")
    buttons = [b["text"] for row in calls[-1].params["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == ["English", "简体中文", "繁體中文"]
    calls = await harness.press(ann, "繁體中文")
    assert "語言已設為繁體中文。" in harness.texts(calls, 1001)
    menus = [c for c in calls if c.method == "setMyCommands"]
    assert menus and all(c.params["scope"] == {"type": "chat", "chat_id": 1001} for c in menus)
    assert "積分" in harness.texts(await harness.send(ann, "/balance"))[0]
    assert "積分" in harness.texts(await harness.send(ann, "/help"))[0]
    await harness.send(ann, "/language")
    calls = await harness.press(ann, "English")
    assert "Language set to English." in harness.texts(calls, 1001)
    assert "points" in harness.texts(await harness.send(ann, "/balance"))[0]


async def test_help_lists_commands_by_role(harness: BotHarness) -> None:
    await _join(harness)
    member_help = harness.texts(await harness.send(harness.user(1001), "/help"))[0]
    cashier_help = harness.texts(await harness.send(harness.user(CASHIER_ID, "Cass"), "/help"))[0]
    admin_help = harness.texts(await harness.send(harness.user(ADMIN_ID, "Boss"), "/help"))[0]
    assert "/balance" in member_help and "/purchase" not in member_help and "/adjust" not in member_help
    assert "/purchase" in cashier_help and "/adjust" not in cashier_help
    assert "/purchase" in admin_help and "/adjust" in admin_help


async def test_non_members_are_invited_to_join(harness: BotHarness) -> None:
    stranger = harness.user(4242, "Zed")
    for command in ("/balance", "/history", "/card", "hello"):
        replies = harness.texts(await harness.send(stranger, command))
        assert replies == ["You are not a member yet. Send /start to join."]
    assert "don't know that command" in harness.texts(await harness.send(stranger, "/frobnicate"))[0]


async def test_unhandled_error_is_logged_and_apologised_in_the_users_language(
    harness: BotHarness, monkeypatch, caplog
) -> None:
    await _join(harness, language="zh-hans")

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr("handlers.account.summary", broken)
    calls = await harness.send(harness.user(1001, language_code="zh-hans"), "/balance")
    [apology] = harness.texts(calls)
    assert apology == harness.dp["i18n"].gettext(
        "Sorry, something went wrong. Please try again in a moment.", locale="zh_Hans"
    )
    assert apology.startswith("抱歉")
    assert "database on fire" in caplog.text
    # ...and the bot keeps working.
    monkeypatch.undo()
    assert "积分" in harness.texts(await harness.send(harness.user(1001), "/balance"))[0]


async def test_the_bot_says_nothing_private_in_groups(harness: BotHarness) -> None:
    await _join(harness)
    group = {"id": -100123, "type": "supergroup", "title": "Staff"}
    for text in ("/balance", "/card", "/start", "/purchase 1001 10", "/frobnicate", "hello"):
        update = harness.tg.message_update(harness.user(ADMIN_ID, "Boss"), text, chat=group)
        assert harness.texts(await harness.feed(update)) == [], text


async def test_an_update_holds_no_database_connection_while_telegram_answers(
    harness: BotHarness, engine: AsyncEngine
) -> None:
    """Connections are for queries: a worker with many replies in flight must not need one for each."""
    await _join(harness)
    pool = engine.sync_engine.pool
    harness.tg.slow_sends(0.3)
    for command in ("/balance", "/history"):  # reads outside a unit of work; reads through the session
        before = len(harness.tg.calls)
        update = asyncio.create_task(harness.send(harness.user(1001), command))
        async with asyncio.timeout(5):
            while len(harness.tg.calls) == before:  # noqa: ASYNC110 (the reply reached Telegram, which answers late)
                await asyncio.sleep(0.01)
        assert pool.checkedout() == 0  # type: ignore[attr-defined]
        assert harness.texts(await update)
    assert pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_failing_button_press_on_a_bot_message_is_logged_and_apologised(
    harness: BotHarness, monkeypatch, caplog
) -> None:
    """Telegram's bot messages carry link_preview_options, which aiogram fills with Default sentinels that
    pydantic cannot serialise: logging such an update used to crash the error handler itself."""
    await _join(harness)
    ann = harness.user(1001)
    await harness.send(ann, "/balance")
    message = dict(harness.tg.last_message(1001) or {})
    message["link_preview_options"] = {"is_disabled": True}

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("history on fire")

    monkeypatch.setattr("handlers.account.history", broken)
    update = harness.tg.callback_update(ann, message, "hist:1")
    calls = await harness.feed(update)
    [answer] = [c for c in calls if c.method == "answerCallbackQuery"]
    assert answer.params["text"] == "Sorry, something went wrong. Please try again in a moment."
    assert "history on fire" in caplog.text and '"link_preview_options":{"is_disabled":true}' in caplog.text
    assert f'"update_id":{update["update_id"]}' in caplog.text
