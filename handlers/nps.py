"""NPS surveys: the 0–10 answer, the reason, and what follows from the score (``notifications.surveys`` asks)."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, NotCommand
from handlers.support import Desk, relay_to_staff
from handlers.ui import edit_or_keep
from loyalty import feedback, nps
from loyalty.members import MemberView
from loyalty.program import Program
from notifications.surveys import NpsScore, NpsSkip, keyboard, question
from notifications.texts import speaking
from storage.database import DbSession
from storage.models import Survey

log = logging.getLogger(__name__)


class NpsReason(StatesGroup):
    waiting = State()


async def choose_score(
    query: CallbackQuery,
    callback_data: NpsScore,
    session: DbSession,
    member: MemberView,
    program: Program,
    state: FSMContext,
    clock: Callable[[], datetime],
) -> None:
    if not 0 <= callback_data.score <= 10:
        await query.answer(_("That choice is not available."), show_alert=True)
        return
    answer = await nps.score(session, callback_data.survey_id, member.id, callback_data.score, clock())
    if answer is None:
        await query.answer(_("That choice is not available."), show_alert=True)
        return
    if answer.survey.finished_at is not None:
        await query.answer(_("Thank you, your answer is recorded already."))
        return
    await query.answer()
    await state.set_state(NpsReason.waiting)
    await state.update_data(survey_id=callback_data.survey_id)
    if isinstance(query.message, Message):
        text = (
            question(program)
            + "\n\n"
            + _(
                "You chose <b>{score}</b>. What is the main reason for your score? Write it below, or tap Skip."
            ).format(score=callback_data.score)
        )
        await edit_or_keep(query.message, text, keyboard(callback_data.survey_id, callback_data.score, skip=True))


async def skip_reason(
    query: CallbackQuery,
    callback_data: NpsSkip,
    session: DbSession,
    member: MemberView,
    program: Program,
    state: FSMContext,
    bot: Bot,
    i18n: I18n,
    desk: Desk,
    clock: Callable[[], datetime],
) -> None:
    await query.answer()
    await _finish(
        session,
        member,
        program,
        state,
        bot,
        i18n,
        desk,
        callback_data.survey_id,
        None,
        clock(),
        query.message if isinstance(query.message, Message) else None,
    )


async def give_reason(
    message: Message,
    session: DbSession,
    member: MemberView,
    program: Program,
    state: FSMContext,
    bot: Bot,
    i18n: I18n,
    desk: Desk,
    clock: Callable[[], datetime],
) -> None:
    if not message.text:
        await message.answer(_("Please write your reason as text, or tap Skip."))
        return
    survey_id = (await state.get_data()).get("survey_id")
    if not isinstance(survey_id, int):
        await state.clear()
        return
    await _finish(session, member, program, state, bot, i18n, desk, survey_id, message.text, clock(), None)


async def _finish(
    session: DbSession,
    member: MemberView,
    program: Program,
    state: FSMContext,
    bot: Bot,
    i18n: I18n,
    desk: Desk,
    survey_id: int,
    reason: str | None,
    now: datetime,
    survey_message: Message | None,
) -> None:
    await state.clear()
    answer = await nps.finish(session, survey_id, member.id, reason, now)
    if answer is None or not answer.changed:
        await bot.send_message(member.chat_id, _("Thank you, your answer is recorded already."))
        return
    survey = answer.survey
    assert survey.score is not None
    if survey_message is not None:
        await edit_or_keep(
            survey_message, _("Your answer: <b>{score}</b>. Thank you!").format(score=survey.score), None
        )
    kind = nps.category(survey.score)
    if kind is nps.Category.PROMOTER:
        await bot.send_message(
            member.chat_id,
            _(
                "Thank you, that means a lot to us! 💛 Would you invite a friend? /refer gives you your link, "
                "and you both get points."
            ),
        )
    elif kind is nps.Category.DETRACTOR:
        await bot.send_message(
            member.chat_id,
            _("Thank you for telling us. We are sorry we let you down; our team will get in touch with you here."),
        )
        await _alert_staff(session, member, program, bot, i18n, desk, survey, now)
    else:
        await bot.send_message(member.chat_id, _("Thank you for your feedback!"))


async def _alert_staff(
    session: DbSession,
    member: MemberView,
    program: Program,
    bot: Bot,
    i18n: I18n,
    desk: Desk,
    survey: Survey,
    now: datetime,
) -> None:
    """A detractor opens a support thread carrying their score and reason."""
    assert survey.score is not None
    text = f"NPS {survey.score}" + (f": {html.escape(survey.reason)}" if survey.reason else "")
    received = await feedback.member_says(
        session,
        member.id,
        source_key=f"nps:{survey.id}",
        kind="nps",
        text=text,
        file_id=None,
        now=now,
        score=survey.score,
    )
    with speaking(i18n, program.staff_language):
        note = (
            _("🚨 Detractor alert: {name} scored us {score}/10.").format(
                name=html.escape(member.first_name), score=survey.score
            )
            + "\n"
            + (
                _("Reason: {reason}").format(reason=html.escape(survey.reason))
                if survey.reason
                else _("No reason given.")
            )
        )
    await relay_to_staff(bot, desk, session, i18n, program, received, note=note, now=now)


def router() -> Router:
    router = Router(name="nps")
    router.callback_query.filter(IsMember())
    router.callback_query.register(choose_score, NpsScore.filter())
    router.callback_query.register(skip_reason, NpsSkip.filter())
    return router


def input_router() -> Router:
    """The reason for a score; included after every feature so commands and menu buttons still work."""
    router = Router(name="nps-input")
    router.message.filter(IsMember(), NotCommand())
    router.message.register(give_reason, NpsReason.waiting)
    return router
