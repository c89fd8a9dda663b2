"""NPS: the score, due surveys on a given clock, answering once, and what detractors and promoters get."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from loyalty.metrics import nps_of
from notifications.surveys import send_due_surveys
from storage.models import Survey, Thread, ThreadMessage
from tests.harness import SUPPORT_CHAT_ID, BotHarness

ANN = 1001


def test_nps_is_percent_promoters_minus_percent_detractors() -> None:
    scores = [10] * 25 + [9] * 25 + [8] * 15 + [7] * 15 + [6] * 10 + [0] * 10
    result = nps_of(scores)
    assert (result.answers, result.promoters, result.passives, result.detractors) == (100, 50, 30, 20)
    assert result.score == 30
    assert nps_of([]).score is None
    assert nps_of([6, 7, 9]).score == 0


async def _send_due(harness: BotHarness) -> int:
    dp = harness.dp
    return await send_due_surveys(harness.bot, harness.sessions, harness.services.program, dp["i18n"], harness.clock())


async def _surveys(harness: BotHarness) -> list[Survey]:
    async with harness.sessions() as session:
        return list((await session.execute(select(Survey).order_by(Survey.id))).scalars())  # type: ignore[arg-type]


async def _ann_bought(harness: BotHarness, receipt: str) -> dict[str, Any]:
    ann = harness.user(ANN, "Ann")
    if await harness.member(ANN) is None:
        await harness.send(ann, "/start")
    member = await harness.member(ANN)
    assert member is not None
    await harness.purchase(member.code, "30", receipt)
    return ann


async def test_surveys_are_due_a_day_after_a_purchase_once_per_90_days(harness: BotHarness) -> None:
    await _ann_bought(harness, "N-1")
    harness.clock.advance(hours=23)
    assert await _send_due(harness) == 0
    harness.clock.advance(hours=1)
    assert await _send_due(harness) == 1
    text = harness.tg.last_text(ANN) or ""
    assert "How likely are you to recommend Bean There Coffee" in text
    keyboard = harness.tg.last_message(ANN)["reply_markup"]["inline_keyboard"]  # type: ignore[index]
    assert [[b["text"] for b in row] for row in keyboard] == [
        [str(n) for n in range(6)],
        [str(n) for n in range(6, 11)],
    ]
    assert await _send_due(harness) == 0  # a second run sends nothing twice
    # Another purchase within 90 days brings no new survey; one after 90 days does.
    await _ann_bought(harness, "N-2")
    harness.clock.advance(days=2)
    assert await _send_due(harness) == 0
    harness.clock.advance(days=89)
    await _ann_bought(harness, "N-3")
    harness.clock.advance(hours=24)
    assert await _send_due(harness) == 1
    assert len(await _surveys(harness)) == 2


async def test_old_refunded_and_blocked_purchases_bring_no_survey(harness: BotHarness) -> None:
    await _ann_bought(harness, "O-1")
    harness.clock.advance(hours=24 + 73)  # missed the window (the scheduler was down, say)
    assert await _send_due(harness) == 0
    await _ann_bought(harness, "O-2")
    await harness.send(harness.user(9001, "Admin"), "/refund O-2")
    harness.clock.advance(hours=25)
    assert await _send_due(harness) == 0
    bob = harness.user(1002, "Bob")
    await harness.send(bob, "/start")
    bob_member = await harness.member(1002)
    assert bob_member is not None
    await harness.purchase(bob_member.code, "30", "O-3")
    await harness.feed(harness.tg.my_chat_member_update(bob, "kicked"))
    harness.clock.advance(hours=25)
    assert await _send_due(harness) == 0


async def _surveyed(harness: BotHarness) -> dict[str, Any]:
    ann = await _ann_bought(harness, "S-1")
    harness.clock.advance(hours=24)
    assert await _send_due(harness) == 1
    return ann


async def test_double_tap_records_once_a_changed_score_edits_and_a_detractor_alerts_staff(harness: BotHarness) -> None:
    ann = await _surveyed(harness)
    survey_message = harness.tg.last_message(ANN)
    calls = await harness.press(ann, "8")
    assert "What is the main reason" in harness.texts(calls, ANN)[-1]
    first = (await _surveys(harness))[0]
    assert first.score == 8
    # The same tap replayed (the same callback update twice) and a double tap record once.
    tap = harness.tg.callback_update(ann, survey_message or {}, "nps:1:8")
    await harness.feed(tap)
    await harness.feed(tap)
    assert (await _surveys(harness))[0].scored_at == first.scored_at
    # Another score before the reason replaces the answer.
    calls = await harness.press(ann, "4")
    assert "You chose <b>4</b>" in harness.texts(calls, ANN)[-1]
    assert (await _surveys(harness))[0].score == 4

    calls = await harness.send(ann, "Cold <b>coffee</b> & a 20 min wait")
    assert "sorry we let you down" in harness.texts(calls, ANN)[-1]
    survey = (await _surveys(harness))[0]
    assert survey.score == 4 and survey.reason == "Cold <b>coffee</b> & a 20 min wait" and survey.finished_at
    alert = [c for c in calls if c.params.get("chat_id") == SUPPORT_CHAT_ID and c.method == "sendMessage"]
    assert alert and "Detractor alert: Ann scored us 4/10" in alert[-1].params["text"]
    assert "Cold &lt;b&gt;coffee&lt;/b&gt; &amp; a 20 min wait" in alert[-1].params["text"]
    async with harness.sessions() as session:
        thread = (await session.execute(select(Thread))).scalar_one()
        opened_by = (await session.execute(select(ThreadMessage))).scalar_one()
    assert thread.status == "open" and opened_by.score == 4 and opened_by.kind == "nps"

    # The answer is final now: taps change nothing.
    calls = await harness.feed(harness.tg.callback_update(ann, survey_message or {}, "nps:1:10"))
    assert "recorded already" in calls[-1].params["text"]
    assert (await _surveys(harness))[0].score == 4


async def test_a_promoter_skipping_the_reason_is_invited_to_refer(harness: BotHarness) -> None:
    ann = await _surveyed(harness)
    await harness.press(ann, "10")
    calls = await harness.press(ann, "Skip")
    assert any("/refer" in t for t in harness.texts(calls, ANN))
    survey = (await _surveys(harness))[0]
    assert survey.score == 10 and survey.reason is None and survey.finished_at is not None
    assert not [c for c in calls if c.params.get("chat_id") == SUPPORT_CHAT_ID]


async def test_someone_elses_survey_and_forged_scores_are_refused(harness: BotHarness) -> None:
    await _surveyed(harness)
    bob = harness.user(1002, "Bob")
    await harness.send(bob, "/start")
    message = harness.tg.last_message(ANN) or {}
    calls = await harness.feed(harness.tg.callback_update(bob, message, "nps:1:0"))
    assert "not available" in calls[-1].params["text"]
    calls = await harness.feed(harness.tg.callback_update(harness.user(ANN, "Ann"), message, "nps:1:11"))
    assert "not available" in calls[-1].params["text"]
    assert (await _surveys(harness))[0].score is None
