"""Plural forms: English says "1 point" and "2 points"; Chinese has one form, which carries the number."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from aiogram.utils.i18n import ngettext
from babel.messages.pofile import read_po

from handlers.rewards import _line as reward_line
from loyalty.program import load_program
from notifications.texts import make_i18n, speaking
from storage.models import Reward
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import i18n as catalogs  # noqa: E402  (tools/i18n.py, not a package)


def _render(language: str, cost: int) -> str:
    """A line of /rewards, as the handler renders it."""
    reward = Reward(key="tea", title="Tea", title_zh_hans="茶", title_zh_hant="茶", cost=cost)
    with speaking(make_i18n(), language):
        return reward_line(reward, load_program(), language)


def test_english_says_one_point_and_two_points() -> None:
    assert _render("en", 1) == "🎁 <b>Tea</b> — 1 point"
    assert _render("en", 2) == "🎁 <b>Tea</b> — 2 points"
    assert _render("en", 0) == "🎁 <b>Tea</b> — 0 points"


@pytest.mark.parametrize(
    ("language", "text"), [("zh-Hans", "🎁 <b>茶</b> — {n} 积分"), ("zh-Hant", "🎁 <b>茶</b> — {n} 點積分")]
)
def test_chinese_has_one_form_with_the_number(language: str, text: str) -> None:
    assert _render(language, 1) == text.format(n=1)
    assert _render(language, 2) == text.format(n=2)


@pytest.mark.parametrize(
    ("lang", "plurals"), [("en", [1, 0, 1, 1]), ("zh_Hans", [0, 0, 0, 0]), ("zh_Hant", [0, 0, 0, 0])]
)
def test_compiled_catalogs_carry_each_languages_plural_rule(lang: str, plurals: list[int]) -> None:
    # The .po files have no header (--omit-header): the rule comes from the locale when the .mo is written.
    translations = make_i18n().locales[lang]
    expected = {
        "en": "nplurals=2; plural=(n != 1);",
        "zh_Hans": "nplurals=1; plural=0;",
        "zh_Hant": "nplurals=1; plural=0;",
    }
    assert translations.info()["plural-forms"] == expected[lang]
    plural = vars(translations)["plural"]  # the form index gettext picks for a count, parsed from that header
    assert [plural(n) for n in (0, 1, 2, 11)] == plurals


def _plural_entries() -> list[tuple[str, str]]:
    with catalogs.POT.open("rb") as handle:
        return [(m.id[0], m.id[1]) for m in read_po(handle) if m.id and m.pluralizable]


def test_every_plural_text_is_chinese_for_any_count() -> None:
    entries = _plural_entries()
    assert len(entries) >= 40
    i18n = make_i18n()
    for singular, plural in entries:
        for language in ("zh-Hans", "zh-Hant"):
            with speaking(i18n, language):
                one, two = ngettext(singular, plural, 1), ngettext(singular, plural, 2)
            assert one == two  # one form for every count
            assert one not in (singular, plural), f"{language} falls back to English for {plural!r}"
        with speaking(i18n, "en"):
            assert (ngettext(singular, plural, 1), ngettext(singular, plural, 2)) == (singular, plural)


def test_a_count_without_a_plural_form_is_caught() -> None:
    for text in (
        "You have {points} points.",
        "You have <b>{points}</b> points.",
        "{points} bonus points for you",
        "in the next {days} days",
        "to {total} members",
        "{stamps} of {total} stamps",
    ):
        assert catalogs.COUNTED.search(text), text
    for text in ("Points: {points}", "Spend {missing} more to reach {tier}.", "{hours} h {minutes} min"):
        assert not catalogs.COUNTED.search(text), text


async def _join(harness: BotHarness, user_id: int = 1001, language: str = "en") -> str:
    await harness.send(harness.user(user_id, "Ann", language_code=language), "/start")
    member = await harness.member(user_id)
    assert member is not None
    return member.code


async def test_a_purchase_earning_one_point_says_one_point(harness: BotHarness) -> None:
    code = await _join(harness)  # 50 welcome points; the example program pays 1 point per 1 CNY
    calls = await harness.purchase(code, "1", "R-1")
    [staff_reply] = harness.texts(calls, CASHIER_ID)
    assert ": +1 point, balance 51." in staff_reply
    [note] = harness.texts(calls, 1001)
    assert "You earned <b>1</b> point." in note and "points." not in note.splitlines()[0]
    assert "Your balance: 51 points." in note
    assert "1 of 9 stamps" in note
    calls = await harness.purchase(code, "1", "R-1")
    [again] = harness.texts(calls, CASHIER_ID)
    assert again.startswith("Receipt R-1 was already recorded on") and ", 1 point). Nothing was added." in again


async def test_a_chinese_member_sees_the_one_form_for_one_point(harness: BotHarness) -> None:
    code = await _join(harness, 1002, "zh-hans")
    calls = await harness.purchase(code, "1", "R-2")
    [note] = harness.texts(calls, 1002)
    assert "本次获得 <b>1</b> 积分。" in note


async def test_an_adjustment_of_one_point_says_one_point(harness: BotHarness) -> None:
    code = await _join(harness)
    admin = harness.user(ADMIN_ID, "Boss")
    [reply] = harness.texts(await harness.send(admin, f"/adjust {code} +1 gift"), ADMIN_ID)
    assert reply.startswith("✅ +1 point for Ann")
    [reply] = harness.texts(await harness.send(admin, f"/adjust {code} -1 correction"), ADMIN_ID)
    assert reply.startswith("✅ -1 point for Ann")
    [reply] = harness.texts(await harness.send(admin, f"/adjust {code} -60 correction"), ADMIN_ID)
    assert reply == "Ann has only 50 points; nothing was changed."
