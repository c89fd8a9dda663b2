"""/share end to end: submissions, staff moderation in the support chat, caps, duplicates, replays."""

from __future__ import annotations

from typing import Any

from loyalty.sharing import normalize_link
from tests.harness import SUPPORT_CHAT_ID, SUPPORT_ID, BotHarness

ANN = 1001


async def _member(harness: BotHarness) -> dict[str, Any]:
    ann = harness.user(ANN, "Ann")
    await harness.send(ann, "/start")
    return ann


async def _share(
    harness: BotHarness, user: dict[str, Any], kind_button: str, content: str | None = None, **extra: Any
) -> list[str]:
    await harness.send(user, "/share")
    calls = await harness.press(user, kind_button)
    if content is None and not extra:
        return harness.texts(calls, user["id"]) + [
            str(c.params.get("text", "")) for c in calls if c.method == "answerCallbackQuery"
        ]
    calls = await harness.feed(harness.tg.message_update(user, content, **extra))
    return harness.texts(calls, user["id"])


def _review_data(harness: BotHarness, button: str) -> tuple[dict[str, Any], str]:
    message = harness.tg.last_message(SUPPORT_CHAT_ID)
    assert message is not None
    for row in message["reply_markup"]["inline_keyboard"]:
        for b in row:
            if b["text"] == button:
                return message, b["callback_data"]
    raise AssertionError(button)


async def test_a_link_approved_by_staff_pays_once(harness: BotHarness) -> None:
    ann = await _member(harness)
    texts = await _share(harness, ann, "🔗 A link to your post", "https://www.example.com/p/123?utm_source=x")
    assert "Our staff will check it soon" in texts[-1]
    review = harness.tg.last_message(SUPPORT_CHAT_ID)
    assert review is not None and "https://example.com/p/123" in review["text"] and "20 points" in review["text"]

    # A member cannot press staff buttons.
    message, approve = _review_data(harness, "✅ Approve")
    calls = await harness.feed(harness.tg.callback_update(ann, message, approve))
    assert "Only the shop's staff" in calls[-1].params["text"]
    assert (await harness.member(ANN)).points == 50  # type: ignore[union-attr]

    staff = harness.user(SUPPORT_ID, "Sue")
    calls = await harness.feed(harness.tg.callback_update(staff, message, approve))
    assert any("approved your 🔗 A link to your post: +20 points" in t for t in harness.texts(calls, ANN))
    assert (await harness.member(ANN)).points == 70  # type: ignore[union-attr]
    # The same tap again, and another moderator's tap, change nothing.
    for presser in (staff, harness.user(9001, "Admin")):
        calls = await harness.feed(harness.tg.callback_update(presser, message, approve))
        assert "Already decided" in calls[-1].params["text"]
        assert harness.texts(calls, ANN) == []
    assert (await harness.member(ANN)).points == 70  # type: ignore[union-attr]
    closed = harness.tg.find_message(SUPPORT_CHAT_ID, message["message_id"])
    assert closed is not None and "Approved by Sue" in closed["text"]

    # The same post again, even written differently, is refused.
    harness.clock.advance(days=1)
    texts = await _share(harness, ann, "🔗 A link to your post", "http://example.com/p/123/#comments")
    assert "shared before" in texts[-1]


async def test_rejection_tells_the_member_why_and_pays_nothing(harness: BotHarness) -> None:
    ann = await _member(harness)
    await _share(harness, ann, "✍️ A review", "Great coffee, friendly staff, <b>lovely</b> place!")
    review = harness.tg.last_message(SUPPORT_CHAT_ID)
    assert review is not None and "&lt;b&gt;lovely&lt;/b&gt;" not in review["text"]  # shown as text, escaped
    assert "<b>lovely</b>" in review["text"]  # the emulator stores the parsed text
    message, reject = _review_data(harness, "❌ Not about us")
    calls = await harness.feed(harness.tg.callback_update(harness.user(SUPPORT_ID, "Sue"), message, reject))
    assert any("was not approved: not about us" in t for t in harness.texts(calls, ANN))
    assert (await harness.member(ANN)).points == 50  # type: ignore[union-attr]
    # A rejected review does not use up the day's allowance.
    texts = await _share(harness, ann, "✍️ A review", "Second try: the flat white is the best in town.")
    assert "Our staff will check it soon" in texts[-1]


async def test_a_photo_goes_to_staff_as_a_photo(harness: BotHarness) -> None:
    ann = await _member(harness)
    photo = [
        {"file_id": "member-photo-1", "file_unique_id": "u1", "width": 90, "height": 90},
        {"file_id": "member-photo-1-big", "file_unique_id": "u2", "width": 800, "height": 800},
    ]
    texts = await _share(harness, ann, "📷 A photo", None, photo=photo)
    assert "Our staff will check it soon" in texts[-1]
    sent = [c for c in harness.tg.calls if c.method == "sendPhoto" and c.params["chat_id"] == SUPPORT_CHAT_ID]
    assert len(sent) == 1 and sent[0].params["photo"] == "member-photo-1-big" and sent[0].ok
    message, approve = _review_data(harness, "✅ Approve")
    await harness.feed(harness.tg.callback_update(harness.user(SUPPORT_ID, "Sue"), message, approve))
    assert (await harness.member(ANN)).points == 65  # type: ignore[union-attr]
    assert "Approved by Sue" in (harness.tg.find_message(SUPPORT_CHAT_ID, message["message_id"]) or {})["caption"]


async def test_daily_and_monthly_caps(harness: BotHarness) -> None:
    ann = await _member(harness)
    await _share(harness, ann, "🔗 A link to your post", "https://example.com/a")
    texts = await _share(harness, ann, "🔗 A link to your post")
    assert any("as much of this kind as you can today" in t for t in texts)
    for day in range(1, 4):
        harness.clock.advance(days=1)
        assert "Our staff" in (await _share(harness, ann, "🔗 A link to your post", f"https://example.com/{day}"))[-1]
    harness.clock.advance(days=1)  # 2026-11-27: four links this month already
    texts = await _share(harness, ann, "🔗 A link to your post")
    assert any("as much of this kind as you can this month" in t for t in texts)
    harness.clock.advance(days=5)  # December
    assert "Our staff" in (await _share(harness, ann, "🔗 A link to your post", "https://example.com/dec"))[-1]


async def test_bad_content_is_explained_and_changes_nothing(harness: BotHarness) -> None:
    ann = await _member(harness)
    for bad in [
        "not a link",
        "ftp://example.com/x",
        "https://localhost/x",
        "https://192.168.1.1/x",
        "javascript:alert(1)",
        "https://" + "a" * 600 + ".com",
    ]:
        await harness.send(ann, "/share")
        await harness.press(ann, "🔗 A link to your post")
        calls = await harness.send(ann, bad)
        assert "public web link" in harness.texts(calls, ANN)[-1], bad
    await harness.send(ann, "/cancel")
    texts = await _share(harness, ann, "✍️ A review", "too short")
    assert "at least 20 characters" in texts[-1]
    # A command while a question is pending still works, and a photo where text was asked is explained.
    calls = await harness.send(ann, "/balance")
    assert "points" in harness.texts(calls, ANN)[-1]
    calls = await harness.feed(
        harness.tg.message_update(ann, None, photo=[{"file_id": "p", "file_unique_id": "p", "width": 1, "height": 1}])
    )
    assert "as text" in harness.texts(calls, ANN)[-1]
    assert not [c for c in harness.tg.calls if c.params.get("chat_id") == SUPPORT_CHAT_ID]
    # A forged kind in a callback is refused.
    message = harness.tg.last_message(ANN)
    calls = await harness.feed(harness.tg.callback_update(ann, message or {}, "sk:video"))
    assert "does not earn points" in calls[-1].params["text"]


def test_links_are_normalised_so_one_post_is_one_link() -> None:
    same = {
        normalize_link(u)
        for u in [
            "https://example.com/p/1",
            "http://www.example.com/p/1/",
            "https://EXAMPLE.com/p/1?utm_source=tg#top",
            "https://example.com:443/p/1",
        ]
    }
    assert same == {"https://example.com/p/1"}
    assert normalize_link("https://example.com/p/1?id=2&a=1") == "https://example.com/p/1?a=1&id=2"
    assert normalize_link("https://user@example.com/") is None
