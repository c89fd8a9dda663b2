"""Check-in and mission texts, one wording for the chat (/checkin, /missions), the Mini App and the reminder."""

from __future__ import annotations

import html
from datetime import datetime, timedelta

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext

from loyalty import checkin, missions
from loyalty.program import CheckinMilestone, Program, localized
from notifications.texts import day, money


def reward_title(program: Program, key: str, language: str) -> str:
    rule = next((reward for reward in program.rewards if reward.key == key), None)
    return localized(language, rule.title, rule.title_zh_hans, rule.title_zh_hant) if rule is not None else key


def prize(points: int, reward: str | None, program: Program, language: str, *, escape: bool = True) -> str:
    """ "+50 points and a coupon for Latte": what a milestone or a mission pays. ``escape``: for a Telegram HTML
    message (a web template escapes by itself)."""
    earned = ngettext("+{points} point", "+{points} points", points).format(points=points) if points else ""
    coupon = (
        _("a coupon for {reward}").format(reward=_quote(reward_title(program, reward, language), escape))
        if reward
        else ""
    )
    if earned and coupon:
        return _("{points} and {coupon}").format(points=earned, coupon=coupon)
    return earned or coupon


def _quote(text: str, escape: bool) -> str:
    return html.escape(text) if escape else text


def refusal(error: checkin.CheckinRefused, program: Program, locale: str) -> str:
    if error.refusal is checkin.Refusal.OFF:
        return _("Daily check-in is not part of this program.")
    if error.refusal is checkin.Refusal.TOO_NEW and error.until is not None:
        return _("Welcome! Daily check-in opens for you on {date}.").format(date=day(error.until, program.tz, locale))
    if error.refusal is checkin.Refusal.NO_MAKEUP:
        return _("Make-up check-ins are not offered.")
    if error.refusal is checkin.Refusal.MAKEUP_LIMIT:
        return ngettext(
            "You have used your {count} make-up check-in this month.",
            "You have used your {count} make-up check-ins this month.",
            program.checkin.makeups_per_month,
        ).format(count=program.checkin.makeups_per_month)
    if error.refusal is checkin.Refusal.NOTHING_TO_MAKE_UP:
        return _("There is no missed day to make up.")
    return _("You are not a member yet. Send /start to join.")


def short_of_points(needed: int, balance: int) -> str:
    return ngettext(
        "You need {cost} point; you have {points}.", "You need {cost} points; you have {points}.", needed
    ).format(cost=needed, points=balance)


def streak_line(status: checkin.Status) -> str:
    if not status.streak:
        return _("No streak yet: check in today to start one.")
    return ngettext("🔥 Streak: {days} day in a row.", "🔥 Streak: {days} days in a row.", status.streak).format(
        days=status.streak
    )


def next_line(
    milestone: CheckinMilestone | None, days_to: int, program: Program, language: str, *, escape: bool = True
) -> str | None:
    if milestone is None:
        return None
    return ngettext(
        "{days} more day to the day-{day} bonus: {prize}.",
        "{days} more days to the day-{day} bonus: {prize}.",
        days_to,
    ).format(
        days=days_to,
        day=milestone.day,
        prize=prize(milestone.points, milestone.reward, program, language, escape=escape),
    )


def status_lines(status: checkin.Status, program: Program, language: str, *, escape: bool = True) -> list[str]:
    lines = [streak_line(status)]
    upcoming = next_line(status.next_milestone, status.days_to_next, program, language, escape=escape)
    if upcoming is not None:
        lines.append(upcoming)
    return lines


def result_lines(result: checkin.Result, program: Program, language: str, *, escape: bool = True) -> list[str]:
    """What a check-in (or a make-up) did, as the member reads it; ``escape``: for a Telegram HTML message (the
    app shows it as plain text)."""
    if not result.created:
        lines = [_("✅ You have already checked in today. Come back tomorrow!")]
    elif result.day < result.status.today:
        lines = [_("🩹 Yesterday is made up: your streak goes on.")]
    else:
        lines = [
            ngettext("✅ Checked in! +{points} point.", "✅ Checked in! +{points} points.", result.points).format(
                points=result.points
            )
        ]
    for milestone in result.milestones:
        lines.append(
            _("🎉 Day {day} of your streak: {prize}.").format(
                day=milestone.day, prize=prize(milestone.points, None, program, language) or "🎁"
            )
        )
        if milestone.coupon is not None:
            lines.append(coupon_line(milestone.coupon.code, escape))
    if result.capped:
        lines.append(_("This month's check-in points are all paid; your streak still counts."))
    lines += completion_lines(result.missions, program, language, escape=escape)
    lines += status_lines(result.status, program, language, escape=escape)
    return lines


def coupon_line(code: str, escape: bool) -> str:
    if escape:
        return _("🎁 Your coupon: <code>{code}</code>. See /coupons.").format(code=code)
    return _("🎁 Your coupon: {code}. See Rewards.").format(code=code)


def completion_lines(
    done: list[missions.Completion], program: Program, language: str, *, escape: bool = True
) -> list[str]:
    lines = []
    for item in done:
        lines.append(
            _("🎯 Mission complete: {name} ({prize}).").format(
                name=_quote(item.rule.name_in(language), escape),
                prize=prize(item.points, item.rule.reward, program, language, escape=escape),
            )
        )
        if item.coupon is not None:
            lines.append(coupon_line(item.coupon.code, escape))
    return lines


def mission_value(item: missions.Progress, program: Program, locale: str) -> str:
    """ "2 / 3", "¥120.00 / ¥200.00": how far along a mission is."""
    if item.rule.goal == "spend":
        shown = min(item.value, item.rule.target)
        return f"{money(shown, program.currency, locale)} / {money(item.rule.target, program.currency, locale)}"
    return f"{min(int(item.value), int(item.rule.target))} / {int(item.rule.target)}"


def mission_ends(item: missions.Progress, program: Program, locale: str) -> str:
    last = datetime.combine(item.window.last_day, datetime.min.time(), program.tz) + timedelta(hours=12)
    return _("until {date}").format(date=day(last, program.tz, locale))


def bar(percent: int, width: int = 10) -> str:
    filled = round(percent * width / 100)
    return "▰" * filled + "▱" * (width - filled)


def reminder_text(status: checkin.Status, program: Program, language: str) -> str:
    lines = [_("📅 You have not checked in today. Tap /checkin to keep your streak going.")]
    lines += status_lines(status, program, language)
    lines.append(_("No more reminders? Turn them off in /checkin."))
    return "\n".join(lines)
