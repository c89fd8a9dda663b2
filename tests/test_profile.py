"""/profile end to end: birthday rules, favourites, phone by contact button, the one-time completion bonus."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

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


async def test_malformed_birthdays_are_explained_and_change_nothing(harness: BotHarness) -> None:
    ann = await _ann(harness)
    assert "does not exist" in await _type_birthday(harness, ann, "2026-02-30")
    assert "does not exist" in harness.texts(await harness.send(ann, "13-01"), ANN)[-1]
    assert "YYYY-MM-DD" in harness.texts(await harness.send(ann, "next tuesday"), ANN)[-1]
    member = await harness.member(ANN)
    assert member is not None and member.birth_month is None
    # Still waiting for a good one: Feb 29 is fine.
    calls = await harness.send(ann, "02-29")
    assert "Birthday saved: 02-29" in harness.texts(calls, ANN)[-1]
    member = await harness.member(ANN)
    assert member is not None and (member.birth_month, member.birth_day, member.birth_year) == (2, 29, None)


async def test_a_birthday_once_set_only_staff_can_change(harness: BotHarness) -> None:
    ann = await _ann(harness)
    await _type_birthday(harness, ann, "1990-07-14")
    calls = await harness.send(ann, "/profile")
    text = harness.texts(calls, ANN)[-1]
    assert "1990-07-14" in text and "please ask our staff" in text
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
    calls = await harness.send(harness.user(ADMIN_ID, "Boss"), f"/setbirthday {member.code} 1991-01-02")
    assert "is now 1991-01-02" in harness.texts(calls, ADMIN_ID)[-1]
    member = await harness.member(ANN)
    assert member is not None and (member.birth_year, member.birth_month, member.birth_day) == (1991, 1, 2)


async def test_completing_the_profile_pays_the_bonus_once(harness: BotHarness) -> None:
    ann = await _ann(harness)
    await _type_birthday(harness, ann, "07-14")
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
