"""/checkin (the daily check-in, its streak, a make-up, the evening reminder) and /missions (goals with progress)."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, MenuButton, slash
from handlers.menu import CHECKIN
from handlers.ui import app_rows, edit_or_keep
from loyalty import checkin, missions
from loyalty.ledger import InsufficientPoints
from loyalty.members import MemberView
from loyalty.program import Program
from notifications import engagement
from notifications.texts import locale_of
from storage.database import DbSession


class Step(StrEnum):
    CHECK_IN = "in"
    MAKE_UP = "up"
    REMIND_ON = "on"
    REMIND_OFF = "off"
    MISSIONS = "m"


class CheckinCallback(CallbackData, prefix="ci"):
    step: Step


def _button(text: str, step: Step) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=CheckinCallback(step=step).pack())


async def _markup(
    session: DbSession, program: Program, member: MemberView, status: checkin.Status, webapp_url: str | None
) -> InlineKeyboardMarkup:
    rows = []
    if not status.checked_in and status.eligible_at is None:
        rows.append([_button(_("📅 Check in"), Step.CHECK_IN)])
    if status.can_make_up:
        text = ngettext(
            "🩹 Make up yesterday for {cost} point", "🩹 Make up yesterday for {cost} points", status.makeup_cost
        ).format(cost=status.makeup_cost)
        rows.append([_button(text, Step.MAKE_UP)])
    if await checkin.reminders_on(session, member.id):
        rows.append([_button(_("🔕 No evening reminders"), Step.REMIND_OFF)])
    else:
        rows.append([_button(_("🔔 Remind me in the evening"), Step.REMIND_ON)])
    if program.missions:
        rows.append([_button(_("🎯 Missions"), Step.MISSIONS)])
    return InlineKeyboardMarkup(inline_keyboard=rows + app_rows(webapp_url, "home"))


async def check_in(
    message: Message,
    session: DbSession,
    member: MemberView,
    program: Program,
    clock: Callable[[], datetime],
    webapp_url: str | None = None,
) -> None:
    now = clock()
    locale = locale_of(member.language)
    try:
        result = await checkin.check_in(session, program, member.id, now)
    except checkin.CheckinRefused as refused:
        await message.answer(engagement.refusal(refused, program, locale))
        return
    lines = engagement.result_lines(result, program, member.language)
    lines.append(_("Points: {points}").format(points=result.balance))
    await message.answer(
        "\n".join(lines), reply_markup=await _markup(session, program, member, result.status, webapp_url)
    )


async def on_button(
    query: CallbackQuery,
    callback_data: CheckinCallback,
    session: DbSession,
    member: MemberView,
    program: Program,
    clock: Callable[[], datetime],
    i18n: I18n,
    webapp_url: str | None = None,
) -> None:
    now = clock()
    locale = locale_of(member.language)
    if not isinstance(query.message, Message):
        await query.answer(_("This button has expired. Send /checkin again."), show_alert=True)
        return
    step = callback_data.step
    if step in (Step.REMIND_ON, Step.REMIND_OFF):
        await checkin.set_reminders(session, member.id, step is Step.REMIND_ON)
        await query.answer(
            _("🔔 We will remind you in the evening if you have not checked in.")
            if step is Step.REMIND_ON
            else _("🔕 No more evening reminders.")
        )
        status = await checkin.status(session, program, member.id, now)
        try:
            markup = await _markup(session, program, member, status, webapp_url)
            await query.message.edit_reply_markup(reply_markup=markup)
        except TelegramBadRequest as exc:  # a double tap: the buttons already say so
            if "message is not modified" not in exc.message:
                raise
        return
    if step is Step.MISSIONS:
        await query.answer()
        await query.message.answer(await _missions_text(session, program, member, now))
        return
    try:
        if step is Step.MAKE_UP:
            result = await checkin.make_up(session, program, member.id, now)
        else:
            result = await checkin.check_in(session, program, member.id, now)
    except checkin.CheckinRefused as refused:
        await query.answer(engagement.refusal(refused, program, locale), show_alert=True)
        return
    except InsufficientPoints as short:
        await query.answer(engagement.short_of_points(short.needed, short.balance), show_alert=True)
        return
    await query.answer()
    lines = engagement.result_lines(result, program, member.language)
    lines.append(_("Points: {points}").format(points=result.balance))
    markup = await _markup(session, program, member, result.status, webapp_url)
    await edit_or_keep(query.message, "\n".join(lines), markup)


async def _missions_text(session: DbSession, program: Program, member: MemberView, now: datetime) -> str:
    locale = locale_of(member.language)
    if not program.missions:
        return _("There are no missions at the moment.")
    # Opening the list pays a mission reached but not yet paid (the program changed, say); then shows progress.
    done = await missions.settle(session, program, member.id, now)
    items = await missions.progress(session, program, member.id, now)
    lines = [_("🎯 <b>Missions</b>"), ""]
    lines += engagement.completion_lines(done, program, member.language)
    if not items:
        lines.append(_("There are no missions for you at the moment."))
    for item in items:
        name = html.escape(item.rule.name_in(member.language))
        prize = engagement.prize(item.rule.points, item.rule.reward, program, member.language)
        lines.append(f"<b>{name}</b> · {prize}")
        state = _("✅ done") if item.paid else engagement.mission_ends(item, program, locale)
        value = html.escape(engagement.mission_value(item, program, locale))
        lines.append(f"{engagement.bar(item.percent)} {value} · {state}")
    return "\n".join(lines)


async def list_missions(
    message: Message,
    session: DbSession,
    member: MemberView,
    program: Program,
    clock: Callable[[], datetime],
    webapp_url: str | None = None,
) -> None:
    text = await _missions_text(session, program, member, clock())
    rows = app_rows(webapp_url, "missions")
    await message.answer(text, reply_markup=InlineKeyboardMarkup(inline_keyboard=rows) if rows else None)


def router() -> Router:
    router = Router(name="checkin")
    router.message.filter(IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(check_in, slash("checkin"))
    router.message.register(check_in, MenuButton(CHECKIN))
    router.message.register(list_missions, slash("missions"))
    router.callback_query.register(on_button, CheckinCallback.filter(F.step.in_(list(Step))))
    return router
