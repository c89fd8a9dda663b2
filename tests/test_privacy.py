"""/settings, /mydata, /deleteme and blocking, end to end."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from storage.models import LedgerEntry, Purchase, Submission
from tests.harness import ADMIN_ID, BotHarness

ANN = 1001


async def _ann(harness: BotHarness) -> dict[str, Any]:
    ann = harness.user(ANN, "Ann", username="ann_c")
    await harness.send(ann, "/start")
    return ann


async def test_promotions_switch_sets_a_state_so_replays_do_not_flip_it(harness: BotHarness) -> None:
    ann = await _ann(harness)
    calls = await harness.send(ann, "/settings")
    assert "Promotions and offers: <b>on</b>" in harness.texts(calls, ANN)[-1]
    message = harness.tg.last_message(ANN)
    calls = await harness.press(ann, "🔕 Turn promotions off")
    assert calls[0].params["text"] == "Promotions are off."
    member = await harness.member(ANN)
    assert member is not None and member.promotions is False
    # The same (stale) button pressed again leaves promotions off.
    off_data = message["reply_markup"]["inline_keyboard"][0][0]["callback_data"]  # type: ignore[index]
    await harness.feed(harness.tg.callback_update(ann, message or {}, off_data))
    assert (await harness.member(ANN)).promotions is False  # type: ignore[union-attr]
    await harness.press(ann, "🔔 Turn promotions on")
    assert (await harness.member(ANN)).promotions is True  # type: ignore[union-attr]
    # Language from settings.
    await harness.send(ann, "/settings")
    calls = await harness.press(ann, "🌐 Language")
    assert "Choose your language" in harness.texts(calls, ANN)[-1]
    calls = await harness.press(ann, "繁體中文")
    calls = await harness.send(ann, "/settings")
    assert "促銷與優惠訊息" in harness.texts(calls, ANN)[-1]


async def test_mydata_sends_everything_as_json(harness: BotHarness) -> None:
    ann = await _ann(harness)
    member = await harness.member(ANN)
    assert member is not None
    await harness.purchase(member.code, "42.50", "R-100")
    await harness.send(ann, "/share")
    await harness.press(ann, "✍️ A review")
    await harness.send(ann, "The best flat white in Shanghai, honestly.")
    calls = await harness.send(ann, "/mydata")
    document = next(c for c in calls if c.method == "sendDocument")
    assert document.ok and document.params["chat_id"] == ANN
    [content] = document.files.values()
    data = json.loads(content)
    assert data["profile"]["member_code"] == member.code and data["profile"]["username"] == "ann_c"
    assert data["profile"]["points"] == 50 + 42
    assert [e["kind"] for e in data["ledger"]] == ["welcome", "purchase"]
    assert data["purchases"][0]["amount_minor"] == 4250 and data["purchases"][0]["receipt"] == "R-100"
    assert data["shared_content"][0]["content"].startswith("The best flat white")
    assert data["coupons"] == [] and data["referrals"] == []


async def test_deleteme_erases_personal_data_keeps_the_accounts_and_stops_messages(harness: BotHarness) -> None:
    ann = await _ann(harness)
    member = await harness.member(ANN)
    assert member is not None
    await harness.send(ann, "/share")
    await harness.press(ann, "✍️ A review")
    await harness.send(ann, "Lovely little place with great beans.")
    await harness.purchase(member.code, "30", "R-1")

    await harness.send(ann, "/deleteme")
    calls = await harness.press(ann, "Cancel")
    assert "Nothing was erased" in harness.texts(calls, ANN)[-1]
    assert (await harness.member(ANN)).erased_at is None  # type: ignore[union-attr]

    await harness.send(ann, "/deleteme")
    calls = await harness.press(ann, "🗑 Yes, erase my data")
    assert "has been erased" in harness.texts(calls, ANN)[-1]
    erased = await harness.member(ANN)
    assert erased is not None and erased.erased_at is not None
    assert (erased.first_name, erased.last_name, erased.username, erased.phone, erased.birth_month) == (
        "",
        None,
        None,
        None,
        None,
    )
    assert erased.promotions is False and erased.points == 80
    async with harness.sessions() as session:
        contents = (await session.execute(select(col(Submission.content)))).scalars().all()
        purchases = (await session.execute(select(Purchase))).scalars().all()
        ledger = (await session.execute(select(LedgerEntry))).scalars().all()
    assert contents == [""] and len(purchases) == 1 and len(ledger) == 2

    # Nothing more reaches them, and to staff they are gone: a purchase finds no member (issue 17: one member
    # look-up for staff and the API, where an erased member is not found).
    harness.tg.clear()
    calls = await harness.purchase(member.code, "10", "R-2")
    assert harness.texts(calls, ANN) == []
    assert harness.texts(calls) == [f"No member found for {member.code}."]
    # They are no member to the bot until they come back; coming back pays no second welcome bonus.
    calls = await harness.send(ann, "/balance")
    assert "not a member yet" in harness.texts(calls, ANN)[-1]
    calls = await harness.send(ann, "/start")
    assert "erased earlier" in harness.texts(calls, ANN)[-1]
    back = await harness.member(ANN)
    assert back is not None and back.erased_at is None and back.points == 80 and back.first_name == "Ann"
    assert back.promotions is False


async def test_a_member_who_blocks_the_bot_gets_nothing_until_they_return(harness: BotHarness) -> None:
    ann = await _ann(harness)
    member = await harness.member(ANN)
    assert member is not None
    calls = await harness.feed(harness.tg.my_chat_member_update(ann, "kicked"))
    assert calls == []
    assert (await harness.member(ANN)).blocked_at is not None  # type: ignore[union-attr]
    calls = await harness.purchase(member.code, "10", "B-1")
    assert harness.texts(calls, ANN) == []
    # Replayed "kicked" changes nothing; "member" (they unblocked) brings messages back.
    await harness.feed(harness.tg.my_chat_member_update(ann, "kicked"))
    await harness.feed(harness.tg.my_chat_member_update(ann, "member"))
    assert (await harness.member(ANN)).blocked_at is None  # type: ignore[union-attr]
    calls = await harness.purchase(member.code, "10", "B-2")
    assert any("Thank you for your purchase" in t for t in harness.texts(calls, ANN))


async def test_the_bot_removed_from_a_group_is_not_a_member_blocking_it(harness: BotHarness) -> None:
    await _ann(harness)
    update = harness.tg.my_chat_member_update(harness.user(ANN, "Ann"), "kicked")
    update["my_chat_member"]["chat"] = {"id": -100555, "type": "supergroup", "title": "Fans"}
    await harness.feed(update)
    assert (await harness.member(ANN)).blocked_at is None  # type: ignore[union-attr]


async def test_an_erased_member_is_not_found_by_any_staff_command(harness: BotHarness) -> None:
    ann = await _ann(harness)
    member = await harness.member(ANN)
    assert member is not None
    await harness.purchase(member.code, "30", "R-1")
    await harness.send(ann, "/deleteme")
    await harness.press(ann, "🗑 Yes, erase my data")
    admin = harness.user(ADMIN_ID, "Boss")
    for ref in (member.code, str(ANN)):
        for command in (
            f"/purchase {ref} 10 coffee R-2",
            f"/adjust {ref} +100 gift",
            f"/vip_refund {ref} stxCHARGE123",
            f"/setbirthday {ref} 1991-01-02",
        ):
            calls = await harness.send(admin, command)
            assert harness.texts(calls, ADMIN_ID) == [f"No member found for {ref}."], command
    after = await harness.member(ANN)
    assert after is not None and after.points == 80 and after.birth_month is None
    async with harness.sessions() as session:
        assert len((await session.execute(select(Purchase))).scalars().all()) == 1
