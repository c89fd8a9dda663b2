"""Talking to people, in the chat and in what the bot sends on its own: catalogs, locales, formatting, notices."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import User
from aiogram.utils.i18n import I18n, get_i18n, ngettext
from aiogram.utils.i18n import gettext as _
from babel import Locale
from babel.dates import format_date, format_datetime, format_skeleton
from babel.numbers import format_compact_currency, format_compact_decimal, format_currency, format_decimal

from loyalty.broadcasts import BadContent, ContentProblem
from loyalty.lift import MINIMUM, Lift
from loyalty.members import MemberView, map_language
from loyalty.metrics import Effect
from loyalty.pending import Pending
from loyalty.privacy import can_message
from loyalty.profile import BadBirthday, Birthday, BirthdayProblem
from loyalty.program import HOLDOUT_MAX, Program
from loyalty.punchcards import CardProgress
from loyalty.purchases import from_minor
from loyalty.rewards import coupon_title
from loyalty.segments import BadSegment, SegmentProblem
from storage.database import DbSession
from storage.models import Coupon, Member

log = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).with_name("locales")
DOMAIN = "messages"
DEFAULT_LOCALE = "en"
# Babel locales for number/date formatting: the script subtag alone is not a full Babel locale. Parsed once:
# given a name, Babel parses it again on every call, which cost as much as formatting the amount.
_BABEL = {name: Locale.parse(tag) for name, tag in (("en", "en"), ("zh_Hans", "zh_Hans_CN"), ("zh_Hant", "zh_Hant_TW"))}


def N_(msgid: str) -> str:
    """Marks a msgid for extraction; translated later, where the reader's locale is known."""
    return msgid


def make_i18n() -> I18n:
    return I18n(path=LOCALES_DIR, default_locale=DEFAULT_LOCALE, domain=DOMAIN)


def locale_of(language: str) -> str:
    """Member language (``zh-Hans``) to catalog name (``zh_Hans``)."""
    return language.replace("-", "_")


def user_locale(member: MemberView | Member | None, user: User | None) -> str:
    if member is not None:
        return locale_of(member.language)
    return locale_of(map_language(user.language_code if user else None))


@contextmanager
def speaking(i18n: I18n, language: str) -> Iterator[I18n]:
    """Render texts in a member's (or the staff's) language, inside an update or outside one (a scheduled job)."""
    with i18n.context(), i18n.use_locale(locale_of(language)):
        yield i18n


def money(amount: Decimal, currency: str, locale: str) -> str:
    return format_currency(amount, currency, locale=_BABEL.get(locale, _BABEL["en"]))


def short_money(amount: Decimal, currency: str, locale: str) -> str:
    """ "CN¥4.5M", "¥449.5万": an amount beside a chart's bar; under 10,000 as ``money`` says it."""
    if abs(amount) < 10_000:
        return money(amount, currency, locale)
    return format_compact_currency(amount, currency, fraction_digits=1, locale=_BABEL.get(locale, _BABEL["en"]))


def day(moment: datetime, tz: ZoneInfo, locale: str) -> str:
    return format_date(moment.astimezone(tz).date(), format="medium", locale=_BABEL.get(locale, _BABEL["en"]))


def month(moment: datetime, tz: ZoneInfo, locale: str) -> str:
    """ "Nov 2026", "2026年11月": a month on a chart."""
    return format_skeleton("yMMM", moment.astimezone(tz).date(), locale=_BABEL.get(locale, _BABEL["en"]))


def short_month(moment: datetime, tz: ZoneInfo, locale: str) -> str:
    """ "Nov", "11月": a month on a chart beside others of its year."""
    return format_skeleton("MMM", moment.astimezone(tz).date(), locale=_BABEL.get(locale, _BABEL["en"]))


def short_day(moment: datetime, tz: ZoneInfo, locale: str) -> str:
    """ "Nov 3", "11月3日": a day under a chart, where the year goes without saying."""
    return format_skeleton("MMMd", moment.astimezone(tz).date(), locale=_BABEL.get(locale, _BABEL["en"]))


def number(value: float, locale: str, *, compact: bool = False) -> str:
    """A count with the locale's grouping ("12,345"); ``compact``: on a chart's axis ("12K", "1.2万")."""
    babel = _BABEL.get(locale, _BABEL["en"])
    if compact:
        return format_compact_decimal(value, format_type="short", fraction_digits=1, locale=babel)
    return format_decimal(value, locale=babel)


# A birthday reads day first in English, "3 May" (CLDR's international English; "May 3" is American), so that
# it cannot be mistaken for another date; Chinese writes "5月3日" in its own order.
_BIRTHDAY_LOCALES = {**_BABEL, "en": Locale.parse("en_001")}


BIRTHDAY_PROBLEMS = {
    BirthdayProblem.FORMAT: N_(
        "Please type your birthday like 1990-07-14, 07-14 (month first), 14 July, 14 July 1990 or 7月14日."
    ),
    BirthdayProblem.NO_SUCH_DAY: N_("That day does not exist. Please check the month and the day."),
    BirthdayProblem.FUTURE: N_("That date is in the future."),
    BirthdayProblem.TOO_OLD: N_("Please check the year."),
}


def birthday_problem(bad: BadBirthday, locale: str) -> str:
    """Why a typed birthday was refused: the member's /profile, staff's /setbirthday and the console alike."""
    if bad.readings is not None:
        day_month, month_day = bad.readings
        return _(
            "That could be {one} or {other}. Please write the month as a word (like 14 July) or put the year "
            "first (like 1990-07-14)."
        ).format(one=birthday_text(day_month, locale), other=birthday_text(month_day, locale))
    return _(BIRTHDAY_PROBLEMS[bad.problem])


def segment_problem(bad: BadSegment, *, escape: bool) -> str:
    """Why a broadcast's filters were refused, in the chat (HTML) and the console (text) alike."""
    word = html.escape(bad.word) if escape else bad.word
    if bad.problem is SegmentProblem.UNKNOWN_FILTER:
        return _("Unknown filter: {word}").format(word=word)
    return _("Not a valid value: {word}").format(word=word)


def content_problem(bad: BadContent, *, escape: bool) -> str:
    """Why a broadcast's message was refused, in the chat (HTML) and the console (text) alike."""
    word = html.escape(bad.word) if escape else bad.word
    if bad.problem is ContentProblem.EMPTY:
        return _("The message is empty: write some text or add a photo.")
    if bad.problem is ContentProblem.TOO_LONG:
        return ngettext(
            "The text is too long: Telegram takes at most {limit} character here.",
            "The text is too long: Telegram takes at most {limit} characters here.",
            bad.limit,
        ).format(limit=bad.limit)
    if bad.problem is ContentProblem.UNCLOSED:
        return _("The formatting tag {tag} is never closed.").format(tag=word)
    if bad.problem is ContentProblem.BAD_BUTTON:
        return ngettext(
            "The button needs a label of 1 to {limit} character.",
            "The button needs a label of 1 to {limit} characters.",
            bad.limit,
        ).format(limit=bad.limit)
    if bad.problem is ContentProblem.BAD_LINK:
        return _("The button's link must be a web address starting with https://")
    tags = "<b> <i> <u> <s> <a href> <code> <pre> <tg-spoiler>"
    return _("Telegram cannot show the formatting {tag}. These work: {tags}").format(
        tag=word, tags=html.escape(tags) if escape else tags
    )


def time_passed() -> str:
    return _("That time has passed. Please send a time in the future.")


def birthday_text(birthday: Birthday, locale: str) -> str:
    """ "3 May" / "3 May 1990", "5月3日" / "1990年5月3日"."""
    skeleton = "yMMMMd" if birthday.year else "MMMMd"
    return format_skeleton(skeleton, birthday.as_date(), locale=_BIRTHDAY_LOCALES.get(locale, _BIRTHDAY_LOCALES["en"]))


def when(moment: datetime, tz: ZoneInfo, locale: str) -> str:
    return format_datetime(moment.astimezone(tz), format="short", locale=_BABEL.get(locale, _BABEL["en"]))


def pending_line(pending: Pending, tz: ZoneInfo, locale: str) -> str | None:
    """Points still inside the return window, and when the next become spendable (/balance and the app's home)."""
    if not pending.points or pending.next_at is None:
        return None
    date = day(pending.next_at, tz, locale)
    if pending.next_points == pending.points:
        text: str = ngettext(
            "🕓 Pending: +{points} point, available on {date}.",
            "🕓 Pending: +{points} points, available on {date}.",
            pending.points,
        )
        return text.format(points=pending.points, date=date)
    text = ngettext(
        "🕓 Pending: +{points} point; +{next} of it available on {date}.",
        "🕓 Pending: +{points} points; the first +{next} available on {date}.",
        pending.points,
    )
    return text.format(points=pending.points, next=pending.next_points, date=date)


def card_lines(cards: list[CardProgress]) -> list[str]:
    """Punch-card progress, and any coupon a full card just earned."""
    lines = []
    language = get_i18n().current_locale.replace("_", "-")
    for card in cards:
        name = html.escape(card.rule.name_in(language))
        lines += [
            _("🎉 Your {card} is full! Coupon <code>{code}</code> is yours: see /coupons.").format(card=name, code=code)
            for code in card.coupons
        ]
        lines.append(
            ngettext(
                "☕ {card}: {stamps} of {total} stamp", "☕ {card}: {stamps} of {total} stamps", card.rule.stamps
            ).format(card=name, stamps=card.stamps, total=card.rule.stamps)
        )
    return lines


async def tell(bot: Bot, i18n: I18n, member: Member, render: Callable[[], str], **kwargs: Any) -> bool:
    """Send a member a message they did not ask for, rendered in their language; nothing to a member who
    blocked the bot or erased their data. False if nothing was delivered."""
    if not can_message(member):
        return False
    with speaking(i18n, member.language):
        text = render()
    try:
        await bot.send_message(member.chat_id, text, **kwargs)
    except TelegramAPIError:
        log.warning("could not message member %s", member.id, exc_info=True)
        return False
    return True


async def coupon_line(session: DbSession, coupon: Coupon | None, member: Member, program: Program) -> str:
    """The line a gifted coupon adds to a message (a birthday offer, a win-back nudge, a VIP gift)."""
    if coupon is None:
        return ""
    title = await coupon_title(session, coupon, member.language)
    until = day(coupon.expires_at, program.tz, locale_of(member.language))
    return "\n" + _("🎁 Your coupon for {reward}: <code>{code}</code>, valid until {date}. See /coupons.").format(
        reward=html.escape(title), code=coupon.code, date=until
    )


def reward_stores(program: Program, reward_key: str | None, language: str) -> str | None:
    """The stores a reward's coupons are accepted at, by name, when the program limits it to some."""
    rule = next((r for r in program.rewards if r.key == reward_key), None) if reward_key else None
    if rule is None or not rule.stores:
        return None
    return ", ".join(store.name_in(language) for store in program.stores if store.key in rule.stores)


CAMPAIGN_KINDS = {"birthday": N_("Birthday offers"), "winback": N_("Win-back nudges"), "broadcast": N_("Broadcasts")}


def lift_lines(found: Lift, program: Program, days: int, locale: str) -> list[str]:
    """A campaign kind's lift over its randomized holdout, in plain words: the two groups, then the differences
    with their 95% intervals, or that the groups are too small to tell. /stats and the console's dashboard."""

    def rate(value: float | None) -> str:
        return "—" if value is None else f"{value:.1%}"

    def per_member(value: float | None) -> str:
        return "—" if value is None else money(from_minor(round(value), program), program.currency, locale)

    def points(value: float) -> str:  # a difference of two rates, in percentage points
        return f"{value * 100:+.1f}%"

    def signed_money(value: float) -> str:
        amount = money(from_minor(round(abs(value)), program), program.currency, locale)
        return f"−{amount}" if round(value) < 0 else f"+{amount}"

    t, h = found.treated, found.holdout
    lines = [
        ngettext(
            "{campaign}, against a randomized holdout (purchases within {days} day):",
            "{campaign}, against a randomized holdout (purchases within {days} days):",
            days,
        ).format(campaign=_(CAMPAIGN_KINDS[found.kind]), days=days),
        _("Recipients: {members} · bought {rate} · sales per member {sales}").format(
            members=t.members, rate=rate(t.conversion), sales=per_member(t.sales_per_member)
        ),
        _("Holdout: {members} · bought {rate} · sales per member {sales}").format(
            members=h.members, rate=rate(h.conversion), sales=per_member(h.sales_per_member)
        ),
    ]
    if found.conversion is None or found.sales is None:
        lines.append(_("Too few members to tell yet: each group needs at least {minimum}.").format(minimum=MINIMUM))
        return lines
    c, s = found.conversion, found.sales
    lines += [
        _("Buyers: {difference} (95% interval {low} to {high})").format(
            difference=points(c.estimate), low=points(c.low), high=points(c.high)
        ),
        _("Sales per member: {difference} (95% interval {low} to {high})").format(
            difference=signed_money(s.estimate), low=signed_money(s.low), high=signed_money(s.high)
        ),
        {
            1: _("A clear lift: more recipients bought than members held out."),
            0: _("No clear difference yet: the interval includes zero."),
            -1: _("Fewer recipients bought than members held out."),
        }[c.sign],
    ]
    return lines


def observed_line(effect: Effect) -> str:
    """A campaign kind without a holdout: recipients beside members who got nothing, not randomized."""
    share = "—" if effect.rate is None else f"{effect.rate:.0%}"
    baseline = "—" if effect.baseline is None else f"{effect.baseline:.0%}"
    return _("{campaign}: {rate} of {recipients} · similar members {baseline} (no holdout, not randomized)").format(
        campaign=_(CAMPAIGN_KINDS[effect.kind]), rate=share, recipients=effect.recipients, baseline=baseline
    )


def holdout_problem(word: str, *, escape: bool) -> str:
    shown = html.escape(word) if escape else word
    return _(
        "“{word}” is not a holdout share: give one from 0 to {most}, e.g. holdout=10%. Nothing was changed."
    ).format(word=shown, most=f"{HOLDOUT_MAX:.0%}")


def holdout_note(share: float) -> str:
    """What keeping a holdout means, said before sending."""
    return _("Holdout: a random {share} of them get nothing, to measure the broadcast against.").format(
        share=f"{share:.0%}"
    )
