"""The support desk end to end: a forum support chat, an ordinary group, and none."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from notifications.support import report_overdue
from storage.models import Thread
from tests.harness import ADMIN_ID, SUPPORT_CHAT_ID, SUPPORT_ID, BotHarness

ANN = 1001
PHOTO = [{"file_id": "ann-photo", "file_unique_id": "ap", "width": 640, "height": 480}]
VOICE = {"file_id": "ann-voice", "file_unique_id": "av", "duration": 3}


def _group(forum: bool) -> dict[str, Any]:
    chat: dict[str, Any] = {"id": SUPPORT_CHAT_ID, "type": "supergroup", "title": "Staff"}
    if forum:
        chat["is_forum"] = True
    return chat


async def _ann_writes(harness: BotHarness, text: str | None = None, **extra: Any) -> list[Any]:
    return await harness.feed(harness.tg.message_update(harness.user(ANN, "Ann"), text, **extra))


async def _thread(harness: BotHarness) -> Thread:
    """The member's latest thread."""
    async with harness.sessions() as session:
        thread = (await session.execute(select(Thread).order_by(Thread.id.desc()).limit(1))).scalar_one()  # type: ignore[union-attr]
    return thread


def _copies(calls: list[Any], chat_id: int) -> list[Any]:
    return [c for c in calls if c.method == "copyMessage" and c.params["chat_id"] == chat_id]


class TestForum:
    @pytest.fixture(autouse=True)
    def forum(self, harness: BotHarness) -> None:
        harness.tg.forum_chats.add(SUPPORT_CHAT_ID)

    async def test_a_full_thread_both_ways(self, harness: BotHarness) -> None:
        ann = harness.user(ANN, "Ann")
        await harness.send(ann, "/start")
        member = await harness.member(ANN)
        assert member is not None
        calls = await harness.send(ann, "/feedback")
        assert "Write your message to our team" in harness.texts(calls, ANN)[-1]

        calls = await _ann_writes(harness, "My latte was cold <b>&</b> late")
        assert "reached our team" in harness.texts(calls, ANN)[-1]
        [topic_call] = [c for c in calls if c.method == "createForumTopic"]
        assert topic_call.params["name"] == f"Ann · {member.code}"
        topic = topic_call.response["result"]["message_thread_id"]
        card = next(c for c in calls if c.method == "sendMessage" and c.params["chat_id"] == SUPPORT_CHAT_ID)
        assert card.params["message_thread_id"] == topic
        assert "Points: 50" in card.params["text"] and "Last purchase: none yet" in card.params["text"]
        assert "NPS: — · Open coupons: 0" in card.params["text"]
        [copy] = _copies(calls, SUPPORT_CHAT_ID)
        assert copy.params["message_thread_id"] == topic and copy.params["from_chat_id"] == ANN and copy.ok

        # A photo and a voice message follow into the same topic, without another acknowledgement.
        for extra in ({"photo": PHOTO}, {"voice": VOICE}):
            calls = await _ann_writes(harness, **extra)
            assert harness.texts(calls, ANN) == []
            [copy] = _copies(calls, SUPPORT_CHAT_ID)
            assert copy.params["message_thread_id"] == topic and copy.ok
        assert not [c for c in harness.tg.calls if c.method == "createForumTopic"][1:]

        # Staff answer in the topic: the member gets a copy, never the staff account.
        answer = harness.tg.message_update(
            harness.user(SUPPORT_ID, "Sue"),
            "Sorry! A fresh one is on us.",
            chat=_group(True),
            message_thread_id=topic,
            is_topic_message=True,
        )
        calls = await harness.feed(answer)
        [back] = _copies(calls, ANN)
        assert back.params["from_chat_id"] == SUPPORT_CHAT_ID and back.ok
        assert harness.tg.last_message(ANN)["from"]["is_bot"] is True  # type: ignore[index]
        assert (await harness.feed(answer)) == []  # a redelivered update relays nothing twice
        thread = await _thread(harness)
        assert thread.first_response_at is not None and thread.waiting_since is None

        # Someone without a support role writing in the topic is ignored.
        stranger = harness.tg.message_update(
            harness.user(1002, "Mallory"),
            "hi Ann, buy my stuff",
            chat=_group(True),
            message_thread_id=topic,
            is_topic_message=True,
        )
        assert await harness.feed(stranger) == []

        # Close: the topic closes and the member is asked to rate the answer.
        close = harness.tg.message_update(
            harness.user(SUPPORT_ID, "Sue"), "/close", chat=_group(True), message_thread_id=topic, is_topic_message=True
        )
        calls = await harness.feed(close)
        assert [c.params["message_thread_id"] for c in calls if c.method == "closeForumTopic"] == [topic]
        assert "How would you rate" in harness.texts(calls, ANN)[-1]
        calls = await harness.press(ann, "⭐⭐⭐⭐")
        assert "Thank you for your rating" in harness.texts(calls, ANN)[-1]
        assert (await _thread(harness)).rating == 4
        rating_message = harness.tg.messages(ANN)[-2]
        calls = await harness.feed(harness.tg.callback_update(ann, rating_message, "csat:1:1"))
        assert "rated this conversation already" in calls[-1].params["text"]
        assert (await _thread(harness)).rating == 4
        calls = await harness.feed(close)  # redelivered: nothing more happens to the member
        assert "already closed" in harness.texts(calls, SUPPORT_CHAT_ID)[-1] and harness.texts(calls, ANN) == []

        # Writing again reopens the same topic.
        calls = await _ann_writes(harness, "One more thing")
        assert [c.params["message_thread_id"] for c in calls if c.method == "reopenForumTopic"] == [topic]
        assert not [c for c in calls if c.method == "createForumTopic"]
        reopened = await _thread(harness)
        assert reopened.status == "open" and reopened.id == 2 and reopened.first_response_at is None
        card = next(c for c in calls if c.method == "sendMessage" and c.params["chat_id"] == SUPPORT_CHAT_ID)
        assert card.params["message_thread_id"] == topic and "thread #2" in card.params["text"]


class TestOrdinaryGroup:
    async def test_replies_to_relayed_messages_reach_the_member(self, harness: BotHarness) -> None:
        ann = harness.user(ANN, "Ann")
        await harness.send(ann, "/start")
        await harness.send(ann, "/feedback")
        calls = await _ann_writes(harness, "Where is my coupon?")
        posted = [c for c in calls if c.params.get("chat_id") == SUPPORT_CHAT_ID and c.method != "getChat"]
        assert posted[0].method == "sendMessage" and "From Ann" in posted[0].params["text"]
        assert "Points: 50" in posted[0].params["text"]  # the card comes with a thread's first message
        assert posted[1].method == "copyMessage"
        copy_id = posted[1].response["result"]["message_id"]
        calls = await _ann_writes(harness, photo=PHOTO)
        photo_id = _copies(calls, SUPPORT_CHAT_ID)[0].response["result"]["message_id"]

        group_message = harness.tg.find_message(SUPPORT_CHAT_ID, copy_id)
        reply = harness.tg.message_update(
            harness.user(SUPPORT_ID, "Sue"),
            "Check /coupons, it is there.",
            chat=_group(False),
            reply_to_message=group_message,
        )
        calls = await harness.feed(reply)
        assert _copies(calls, ANN) and _copies(calls, ANN)[0].ok
        # A reply by someone without a support role is ignored.
        other = harness.tg.message_update(
            harness.user(1002, "Bob"),
            "lol",
            chat=_group(False),
            reply_to_message=harness.tg.find_message(SUPPORT_CHAT_ID, photo_id),
        )
        assert await harness.feed(other) == []
        # A staff message that replies to nothing of a thread is chatter, not an answer.
        assert (
            await harness.feed(
                harness.tg.message_update(harness.user(SUPPORT_ID, "Sue"), "coffee anyone?", chat=_group(False))
            )
            == []
        )
        close = harness.tg.message_update(
            harness.user(SUPPORT_ID, "Sue"),
            "/close",
            chat=_group(False),
            reply_to_message=harness.tg.find_message(SUPPORT_CHAT_ID, photo_id),
        )
        calls = await harness.feed(close)
        assert "closed" in harness.texts(calls, SUPPORT_CHAT_ID)[-1]
        assert (await _thread(harness)).status == "closed"

    async def test_overdue_threads_are_reported_once(self, harness: BotHarness) -> None:
        ann = harness.user(ANN, "Ann")
        await harness.send(ann, "/start")
        await harness.send(ann, "/feedback")
        await _ann_writes(harness, "Hello?")
        dp = harness.dp
        args = (harness.bot, harness.sessions, dp["desk"].chat_id, harness.services.program, dp["i18n"])
        harness.clock.advance(minutes=59)
        assert await report_overdue(*args, now=harness.clock()) == 0
        harness.clock.advance(minutes=2)
        before = len(harness.tg.calls)
        assert await report_overdue(*args, now=harness.clock()) == 1
        report = harness.tg.calls[before:]
        assert len(report) == 1 and "Waiting longer than 60 min" in report[0].params["text"]
        assert "1 h 1 min" in report[0].params["text"]
        assert await report_overdue(*args, now=harness.clock()) == 0

    async def test_a_support_chat_aiogram_cannot_read_counts_as_an_ordinary_group(
        self, harness: BotHarness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Any failure to learn the desk's mode is the same: here getChat's answer lacks the chat's type, so aiogram
        fails to parse it (not a TelegramAPIError). The member is thanked once and never told of an error."""

        async def unparseable(method: str, params: dict[str, Any], files: Any) -> Any:
            return {"id": params["chat_id"]}

        monkeypatch.setitem(harness.tg._handlers, "getChat", unparseable)
        ann = harness.user(ANN, "Ann")
        await harness.send(ann, "/start")
        await harness.send(ann, "/feedback")
        calls = await _ann_writes(harness, "Where is my coupon?")
        replies = harness.texts(calls, ANN)
        assert len(replies) == 1 and "reached our team" in replies[0]
        assert [c.method for c in calls if c.params.get("chat_id") == SUPPORT_CHAT_ID][-2:] == [
            "sendMessage",
            "copyMessage",
        ]


class TestNoSupportChat:
    @pytest.fixture
    def support_chat(self) -> None:
        return None

    async def test_follow_ups_are_acknowledged_thanks_close_and_writing_again_reopens(
        self, harness: BotHarness
    ) -> None:
        ann, sue = harness.user(ANN, "Ann"), harness.user(SUPPORT_ID, "Sue")
        await harness.send(ann, "/start")
        await harness.send(ann, "/feedback")
        assert "reached our team" in harness.texts(await _ann_writes(harness, "My coupon is missing"), ANN)[0]
        calls = await _ann_writes(harness, "It was the latte one")
        [reaction] = [c for c in calls if c.method == "setMessageReaction"]
        assert reaction.params["reaction"] == [{"type": "emoji", "emoji": "👌"}] and not harness.texts(calls, ANN)
        thread = await _thread(harness)
        await harness.send(sue, f"/reply {thread.id} Found it, it is back in /coupons")
        await harness.send(sue, f"/close {thread.id}")
        await harness.press(ann, "⭐⭐⭐⭐")
        # "Thanks!" after the rating is the end of the conversation, not a new one.
        assert harness.texts(await _ann_writes(harness, "Thanks!"), ANN) == [
            "You're welcome! 😊 Write any time if there is anything else."
        ]
        assert (await _thread(harness)).id == thread.id, "no thread was opened"
        # Anything else within the reopen window continues the conversation, and says so.
        [reopened] = harness.texts(await _ann_writes(harness, "One more thing: is the mug back?"), ANN)
        assert reopened == "✅ Your conversation with our team is open again; they will answer you here."
        assert (await _thread(harness)).id != thread.id

    async def test_the_answer_button_sends_what_support_types_next(self, harness: BotHarness) -> None:
        ann, sue = harness.user(ANN, "Ann"), harness.user(SUPPORT_ID, "Sue")
        await harness.send(ann, "/start")
        await harness.send(ann, "/feedback")
        calls = await _ann_writes(harness, "Do you have oat milk?")
        [note] = [c for c in calls if c.params.get("chat_id") == SUPPORT_ID]
        follow_up = await _ann_writes(harness, "And soy?")
        assert any("In an open thread #1" in (c.params.get("text") or "") for c in follow_up)
        prompt = harness.texts(await harness.press(sue, "✍️ Answer", message_id=note.response["result"]["message_id"]))
        assert prompt == ["Type your answer to Ann (thread #1). /cancel to stop."]
        calls = await harness.send(sue, "Both, every day")
        assert harness.texts(calls, ANN) == ["💬 Both, every day"]
        assert "Sent to Ann (thread #1)" in harness.texts(calls, SUPPORT_ID)[-1]
        # The answer was one message: the next one is not sent to Ann.
        assert harness.texts(await harness.send(sue, "hello?"), ANN) == []

    async def test_inbox_reply_and_close_in_private(self, harness: BotHarness) -> None:
        ann, sue = harness.user(ANN, "Ann"), harness.user(SUPPORT_ID, "Sue")
        await harness.send(ann, "/start")
        await harness.send(ann, "/feedback")
        calls = await _ann_writes(harness, "Is the <i>oat</i> milk vegan?")
        # No staff chat: support and admins hear of it in their private chats, with a button to answer.
        assert sorted(c.params.get("chat_id") for c in calls) == [ANN, ADMIN_ID, SUPPORT_ID]
        [to_sue] = [c for c in calls if c.params.get("chat_id") == SUPPORT_ID]
        assert (
            "New thread #1 from Ann" in to_sue.params["text"]
            and "Is the &lt;i&gt;oat&lt;/i&gt; milk" in to_sue.params["text"]
        )
        assert to_sue.params["reply_markup"]["inline_keyboard"][0][0]["text"] == "✍️ Answer"
        await _ann_writes(harness, voice=VOICE)
        harness.clock.advance(minutes=75)
        calls = await harness.send(sue, "/inbox")
        text = harness.texts(calls, SUPPORT_ID)[-1]
        assert "⚠️ #1 Ann" in text and "waiting 1 h 15 min" in text and "[voice]" in text

        thread_id = (await _thread(harness)).id
        calls = await harness.send(sue, f"/reply {thread_id} Yes, it is <b>vegan</b>!")
        assert len(harness.texts(calls, ANN)) == 1
        assert harness.tg.last_text(ANN) == "💬 Yes, it is <b>vegan</b>!"  # shown as typed, not as markup
        assert "Sent to Ann" in harness.texts(calls, SUPPORT_ID)[-1]
        calls = await harness.send(sue, "/inbox")
        assert "answered" in harness.texts(calls, SUPPORT_ID)[-1] and "⚠️" not in harness.texts(calls, SUPPORT_ID)[-1]
        # The whole thread, not just its last message, oldest first.
        [whole] = harness.texts(await harness.send(sue, f"/thread {thread_id}"), SUPPORT_ID)
        assert f"Thread #{thread_id}</b> with Ann" in whole
        asked, voice, answer = (whole.index(part) for part in ("Is the &lt;i&gt;oat", "[voice]", "<b>Staff</b>: Yes"))
        assert asked < voice < answer
        assert "No thread #42" in harness.texts(await harness.send(sue, "/thread 42"), SUPPORT_ID)[-1]
        assert "only for the shop's staff" in harness.texts(await harness.send(ann, f"/thread {thread_id}"), ANN)[-1]
        # Members cannot use the desk.
        calls = await harness.send(ann, "/inbox")
        assert "only for the shop's staff" in harness.texts(calls, ANN)[-1]
        calls = await harness.send(ann, f"/reply {thread_id} hacked")
        assert "only for the shop's staff" in harness.texts(calls, ANN)[-1]
        calls = await harness.send(sue, "/reply 999 hello")
        assert "No thread #999" in harness.texts(calls, SUPPORT_ID)[-1]
        calls = await harness.send(sue, f"/close {thread_id}")
        assert "How would you rate" in harness.texts(calls, ANN)[-1]
        calls = await harness.send(sue, f"/close {thread_id}")
        assert "already closed" in harness.texts(calls, SUPPORT_ID)[-1]
        calls = await harness.send(sue, "/inbox")
        assert "No open threads" in harness.texts(calls, SUPPORT_ID)[-1]
