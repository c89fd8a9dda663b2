"""/profile end to end: birthday rules, favourites, phone by contact button, the one-time completion bonus."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from emulator.server import Call
from loyalty.profile import BadBirthday, Birthday, BirthdayProblem, parse_birthday
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness

ANN = 1001
TODAY = date(2026, 11, 22)


async def _ann(harness: BotHarness) -> dict[str, Any]:
    ann = harness.user(ANN, "Ann")
    await harness.send(ann, "/start")
    return ann


async def _type_birthday(harness: BotHarness, ann: dict[str, Any], text: str) -> str:
    await harness.send(ann, "/profile")
    calls = await harness.press(ann, "🎂 Set birthday")
    assert "When is your birthday?" in harness.texts(calls, ANN)[-1]
    return harness.texts(await harness.send(ann, text), ANN)[-1]


async def _set_birthday(harness: BotHarness, ann: dict[str, Any], text: str, shown: str) -> str:
    """Type a birthday, see it as understood, press ✅ Confirm; the reply to the tap."""
    assert f"Your birthday: <b>{shown}</b>. Is that right?" in await _type_birthday(harness, ann, text)
    return harness.texts(await harness.press(ann, "✅ Confirm"), ANN)[-1]


def _answer(calls: list[Call]) -> str:
    [answer] = [call for call in calls if call.method == "answerCallbackQuery"]
    return str(answer.params.get("text", ""))


def test_birthday_parsing() -> None:
    assert parse_birthday("1990-07-14", TODAY) == Birthday(7, 14, 1990)
    assert parse_birthday(" 07-14 ", TODAY) == Birthday(7, 14)
    assert parse_birthday("02-29", TODAY) == Birthday(2, 29)
    assert parse_birthday("2024-02-29", TODAY) == Birthday(2, 29, 2024)
    assert parse_birthday("０７－１４", TODAY) == Birthday(7, 14)  # typed on a Chinese keyboard
    no_such_day, bad_format = BirthdayProblem.NO_SUCH_DAY, BirthdayProblem.FORMAT
    cases = {
        "2026-02-30": no_such_day,
        "2023-02-29": no_such_day,
        "13-01": no_such_day,
        "04-31": no_such_day,
        "00-10": no_such_day,
        "９９-０１": no_such_day,
        "tomorrow": bad_format,
        "1990-7": bad_format,
        "": bad_format,
        "19900714": bad_format,
        "٠٧-١٤": bad_format,
        "2027-01-01": BirthdayProblem.FUTURE,
        "1850-01-01": BirthdayProblem.TOO_OLD,
    }
    for text, problem in cases.items():
        with pytest.raises(BadBirthday) as caught:
            parse_birthday(text, TODAY)
        assert caught.value.problem is problem, text


@pytest.mark.parametrize(
    ("typed", "understood"),
    [
        ("1990/5/3", Birthday(5, 3, 1990)),  # year first: never ambiguous, whatever the separator
        ("1990.05.03", Birthday(5, 3, 1990)),
        ("05-03", Birthday(5, 3)),  # the documented MM-DD, month first (and confirmed before it counts)
        ("3 May", Birthday(5, 3)),
        ("May 3", Birthday(5, 3)),
        ("3 may 1990", Birthday(5, 3, 1990)),
        ("May 3, 1990", Birthday(5, 3, 1990)),
        ("3rd of May", Birthday(5, 3)),
        ("29 Feb", Birthday(2, 29)),
        ("Sept 14", Birthday(9, 14)),
        ("5月3日", Birthday(5, 3)),
        ("1990年5月3日", Birthday(5, 3, 1990)),
        ("１９９０年５月３号", Birthday(5, 3, 1990)),  # full-width digits, and 号 as people say it
        ("14/07", Birthday(7, 14)),  # 14 cannot be a month: only one reading is a date
        ("7.14", Birthday(7, 14)),
        ("14/07/1990", Birthday(7, 14, 1990)),
        ("05/05", Birthday(5, 5)),  # both readings are the same day
    ],
)
def test_birthdays_as_people_write_them(typed: str, understood: Birthday) -> None:
    assert parse_birthday(typed, TODAY) == understood


@pytest.mark.parametrize("typed", ["05/03", "5.3", "05/03/1990", "3/5/1990", "１２/１１"])
def test_a_day_and_month_that_could_be_either_are_refused_with_both_readings(typed: str) -> None:
    with pytest.raises(BadBirthday) as caught:
        parse_birthday(typed, TODAY)
    assert caught.value.problem is BirthdayProblem.AMBIGUOUS
    assert caught.value.readings is not None
    day_month, month_day = caught.value.readings
    assert (day_month.month, day_month.day) == (month_day.day, month_day.month)


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("31 Feb", BirthdayProblem.NO_SUCH_DAY),
        ("2月30日", BirthdayProblem.NO_SUCH_DAY),
        ("13/13", BirthdayProblem.NO_SUCH_DAY),
        ("3 Ma", BirthdayProblem.FORMAT),  # "Ma" could be March or May
        ("3 Mayo", BirthdayProblem.FORMAT),
        ("١٢月١١日", BirthdayProblem.FORMAT),  # digits of other scripts are not read
        ("3 May 2027", BirthdayProblem.FUTURE),
        ("2027年1月1日", BirthdayProblem.FUTURE),
    ],
)
def test_other_birthday_problems(typed: str, problem: BirthdayProblem) -> None:
    with pytest.raises(BadBirthday) as caught:
        parse_birthday(typed, TODAY)
    assert caught.value.problem is problem


async def test_malformed_birthdays_are_explained_and_change_nothing(harness: BotHarness) -> None:
    ann = await _ann(harness)
    assert "does not exist" in await _type_birthday(harness, ann, "2026-02-30")
    assert "does not exist" in harness.texts(await harness.send(ann, "13-01"), ANN)[-1]
    assert (
        "like 1990-07-14, 07-14 (month first), 14 July"
        in harness.texts(await harness.send(ann, "next tuesday"), ANN)[-1]
    )
    member = await harness.member(ANN)
    assert member is not None and member.birth_month is None
    ambiguous = harness.texts(await harness.send(ann, "05/03"), ANN)[-1]
    assert "That could be 5 March or 3 May" in ambiguous and "14 July" in ambiguous and "1990-07-14" in ambiguous
    member = await harness.member(ANN)
    assert member is not None and member.birth_month is None
    # Still waiting for a good one: Feb 29 is fine, once confirmed.
    calls = await harness.send(ann, "02-29")
    assert "Your birthday: <b>29 February</b>. Is that right?" in harness.texts(calls, ANN)[-1]
    member = await harness.member(ANN)
    assert member is not None and member.birth_month is None, "nothing is stored before ✅ Confirm"
    calls = await harness.press(ann, "✅ Confirm")
    assert "Birthday saved: 29 February" in harness.texts(calls, ANN)[-1]
    member = await harness.member(ANN)
    assert member is not None and (member.birth_month, member.birth_day, member.birth_year) == (2, 29, None)


async def test_a_birthday_once_set_only_staff_can_change(harness: BotHarness) -> None:
    ann = await _ann(harness)
    assert "Birthday saved: 14 July 1990" in await _set_birthday(harness, ann, "1990-07-14", "14 July 1990")
    calls = await harness.send(ann, "/profile")
    text = harness.texts(calls, ANN)[-1]
    assert "14 July 1990" in text and "please ask our staff" in text
    buttons = [b["text"] for row in calls[-1].params["reply_markup"]["inline_keyboard"] for b in row]
    assert "🎂 Set birthday" not in buttons
    # A stale button from before is refused too.
    calls = await harness.feed(harness.tg.callback_update(ann, harness.tg.last_message(ANN) or {}, "pf:birthday"))
    assert "already set" in harness.texts(calls, ANN)[-1]
    # Not by a cashier either; staff can.
    member = await harness.member(ANN)
    assert member is not None
    calls = await harness.send(harness.user(CASHIER_ID, "Cash"), f"/setbirthday {member.code} 1991-01-01")
    assert "only for the shop's staff" in harness.texts(calls, CASHIER_ID)[-1]
    calls = await harness.send(harness.user(ADMIN_ID, "Boss"), f"/setbirthday {member.code} 2026-02-30")
    assert "does not exist" in harness.texts(calls, ADMIN_ID)[-1]
    calls = await harness.send(harness.user(ADMIN_ID, "Boss"), f"/setbirthday {member.code} 02/01/1991")
    assert "That could be 2 January 1991 or 1 February 1991" in harness.texts(calls, ADMIN_ID)[-1]
    member = await harness.member(ANN)
    assert member is not None and (member.birth_year, member.birth_month, member.birth_day) == (1990, 7, 14)
    calls = await harness.send(harness.user(ADMIN_ID, "Boss"), f"/setbirthday {member.code} 1991-01-02")
    assert "is now 1991-01-02" in harness.texts(calls, ADMIN_ID)[-1]
    member = await harness.member(ANN)
    assert member is not None and (member.birth_year, member.birth_month, member.birth_day) == (1991, 1, 2)


async def test_completing_the_profile_pays_the_bonus_once(harness: BotHarness) -> None:
    ann = await _ann(harness)
    await _set_birthday(harness, ann, "07-14", "14 July")
    await harness.send(ann, "/profile")
    calls = await harness.press(ann, "❤️ Favourites")
    rows = calls[-1].params["reply_markup"]["inline_keyboard"]
    assert [r[0]["text"] for r in rows[:2]] == ["▫️ Coffee", "▫️ Tea"]
    await harness.press(ann, "▫️ Coffee")
    # A replayed tap sets the same state again instead of toggling it back.
    message = harness.tg.last_message(ANN)
    await harness.feed(harness.tg.callback_update(ann, message or {}, "fav:coffee:1"))
    member = await harness.member(ANN)
    assert member is not None and member.favourites == "coffee" and member.points == 50

    await harness.send(ann, "/profile")
    calls = await harness.press(ann, "📱 Phone")
    keyboard = calls[-1].params["reply_markup"]["keyboard"]
    assert keyboard[0][0]["request_contact"] is True
    # Someone else's contact card is refused.
    other = {"phone_number": "+8613800000000", "first_name": "Eve", "user_id": 4242}
    calls = await harness.feed(harness.tg.message_update(ann, None, contact=other))
    assert "your own phone number" in harness.texts(calls, ANN)[-1]
    own = {"phone_number": "8613912345678", "first_name": "Ann", "user_id": ANN}
    calls = await harness.feed(harness.tg.message_update(ann, None, contact=own))
    assert "Your profile is complete: +100 points" in harness.texts(calls, ANN)[-1]
    member = await harness.member(ANN)
    assert member is not None and member.phone == "+8613912345678" and member.points == 150

    # Emptying and refilling a favourite pays nothing more.
    await harness.send(ann, "/profile")
    await harness.press(ann, "❤️ Favourites")
    await harness.press(ann, "✅ Coffee")
    calls = await harness.press(ann, "▫️ Coffee")
    assert harness.texts(calls, ANN) == [] or "complete" not in harness.texts(calls, ANN)[-1]
    await harness.feed(harness.tg.message_update(ann, None, contact=own))
    member = await harness.member(ANN)
    assert member is not None and member.points == 150
    calls = await harness.send(ann, "/profile")
    assert "Your profile is complete" in harness.texts(calls, ANN)[-1]


async def test_unknown_favourite_is_refused(harness: BotHarness) -> None:
    ann = await _ann(harness)
    calls = await harness.send(ann, "/profile")
    calls = await harness.feed(harness.tg.callback_update(ann, harness.tg.last_message(ANN) or {}, "fav:caviar:1"))
    assert "not available" in calls[-1].params["text"]
    member = await harness.member(ANN)
    assert member is not None and member.favourites == ""


async def test_a_phone_number_typed_as_text_is_answered_with_the_share_button(harness: BotHarness) -> None:
    ann = harness.user(1001, "Ann")
    await harness.send(ann, "/start")
    calls = await harness.send(ann, "+86 138 0013 8000")
    [reply] = [c for c in calls if c.method == "sendMessage"]
    assert "tap 📱 Share my phone number below" in reply.params["text"]
    [[button], _not_now] = reply.params["reply_markup"]["keyboard"]
    assert button == {"text": "📱 Share my phone number", "request_contact": True}
    member = await harness.member(1001)
    assert member is not None and member.phone is None, "typed, it is not taken: anyone could type anyone's"
    [other] = harness.texts(await harness.send(ann, "see you at 5"))
    assert other.startswith("Please use the menu")


async def test_a_birthday_is_stored_only_when_confirmed_and_change_asks_again(harness: BotHarness) -> None:
    ann = await _ann(harness)
    assert "Your birthday: <b>3 May</b>. Is that right?" in await _type_birthday(harness, ann, "3 May")
    confirm = harness.tg.last_message(ANN)
    buttons = [b["text"] for row in (confirm or {})["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == ["✅ Confirm", "✏️ Change"]
    calls = await harness.press(ann, "✏️ Change")
    assert "When is your birthday?" in harness.texts(calls, ANN)[-1]
    member = await harness.member(ANN)
    assert member is not None and member.birth_month is None
    # The question answered with Change cannot be confirmed any more.
    calls = await harness.feed(harness.tg.callback_update(ann, confirm or {}, "bd:ok:05-03"))
    assert "expired" in _answer(calls)
    member = await harness.member(ANN)
    assert member is not None and member.birth_month is None

    assert "Your birthday: <b>3 May 1990</b>." in harness.texts(await harness.send(ann, "May 3, 1990"), ANN)[-1]
    first = harness.tg.last_message(ANN)
    # Typing another date instead of tapping replaces the question; the older Confirm is stale.
    assert "<b>4 May 1990</b>" in harness.texts(await harness.send(ann, "1990/5/4"), ANN)[-1]
    calls = await harness.feed(harness.tg.callback_update(ann, first or {}, "bd:ok:1990-05-03"))
    assert "expired" in _answer(calls)
    member = await harness.member(ANN)
    assert member is not None and member.birth_month is None

    calls = await harness.press(ann, "✅ Confirm")
    assert "🎂 Birthday saved: 4 May 1990." in harness.texts(calls, ANN)[-1]
    edit = next(call for call in calls if call.method == "editMessageText")
    assert "reply_markup" not in edit.params or not edit.params["reply_markup"].get("inline_keyboard")
    member = await harness.member(ANN)
    assert member is not None and (member.birth_year, member.birth_month, member.birth_day) == (1990, 5, 4)

    # A double tap: the second Confirm is answered and stores nothing again.
    saved = harness.tg.last_message(ANN)
    calls = await harness.feed(harness.tg.callback_update(ann, saved or {}, "bd:ok:1990-05-04"))
    assert _answer(calls) == "Your birthday is saved."
    assert [c for c in calls if c.method in ("sendMessage", "editMessageText")] == []
    # An old question confirmed after the birthday was set changes nothing either.
    calls = await harness.feed(harness.tg.callback_update(ann, first or {}, "bd:ok:1990-05-03"))
    assert "already set" in _answer(calls)
    calls = await harness.feed(harness.tg.callback_update(ann, first or {}, "bd:change:1990-05-03"))
    assert "already set" in _answer(calls)
    member = await harness.member(ANN)
    assert member is not None and (member.birth_year, member.birth_month, member.birth_day) == (1990, 5, 4)
    typed_later = harness.texts(await harness.send(ann, "1990-05-05"), ANN)
    assert not any("Your birthday:" in text for text in typed_later), "no question is open any more"


async def test_a_birthday_set_by_staff_meanwhile_is_not_overwritten_by_confirm(harness: BotHarness) -> None:
    ann = await _ann(harness)
    await _type_birthday(harness, ann, "07-14")
    member = await harness.member(ANN)
    assert member is not None
    await harness.send(harness.user(ADMIN_ID, "Boss"), f"/setbirthday {member.code} 1991-01-02")
    calls = await harness.press(ann, "✅ Confirm")
    assert "already set" in _answer(calls)
    member = await harness.member(ANN)
    assert member is not None and (member.birth_year, member.birth_month, member.birth_day) == (1991, 1, 2)


async def test_the_birthday_question_in_chinese(harness: BotHarness) -> None:
    mei = harness.user(ANN, "Mei", language_code="zh-hans")
    await harness.send(mei, "/start")
    await harness.send(mei, "/profile")
    calls = await harness.press(mei, "🎂 设置生日")
    assert "您的生日是哪天？" in harness.texts(calls, ANN)[-1]
    refused = harness.texts(await harness.send(mei, "5.3"), ANN)[-1]
    assert refused.startswith("这可能是3月5日，也可能是5月3日。") and "7月14日" in refused
    assert (
        harness.texts(await harness.send(mei, "5月3日"), ANN)[-1]
        == "🎂 您的生日：<b>5月3日</b>。对吗？生日只能设置一次。"
    )
    confirm = harness.tg.last_message(ANN)
    assert [b["text"] for b in (confirm or {})["reply_markup"]["inline_keyboard"][0]] == ["✅ 确认", "✏️ 修改"]
    calls = await harness.press(mei, "✏️ 修改")
    assert "您的生日是哪天？" in harness.texts(calls, ANN)[-1]
    assert "<b>1990年5月3日</b>" in harness.texts(await harness.send(mei, "1990年5月3日"), ANN)[-1]
    calls = await harness.press(mei, "✅ 确认")
    assert "🎂 生日已保存：1990年5月3日。" in harness.texts(calls, ANN)[-1]
    assert "1990年5月3日" in harness.texts(await harness.send(mei, "/profile"), ANN)[-1]
    member = await harness.member(ANN)
    assert member is not None and (member.birth_year, member.birth_month, member.birth_day) == (1990, 5, 3)


async def test_the_birthday_question_in_traditional_chinese(harness: BotHarness) -> None:
    wen = harness.user(ANN, "Wen", language_code="zh-hant")
    await harness.send(wen, "/start")
    await harness.send(wen, "/profile")
    await harness.press(wen, "🎂 設定生日")
    assert "<b>12月1日</b>" in harness.texts(await harness.send(wen, "12月1號"), ANN)[-1]
    calls = await harness.press(wen, "✅ 確認")
    assert "🎂 生日已儲存：12月1日。" in harness.texts(calls, ANN)[-1]
