"""NPS surveys that are due: the question with its 0–10 keyboard, sent once per purchase (``handlers.nps`` takes
the answer)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

from aiogram import Bot
from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from loyalty import nps
from loyalty.numbers import RowId
from loyalty.program import Program
from notifications.delivery import Letter, Outcome, send_once
from storage.database import DbSession, SessionFactory
from storage.models import Survey


class NpsScore(CallbackData, prefix="nps"):
    survey_id: RowId
    score: int


class NpsSkip(CallbackData, prefix="npsx"):
    survey_id: RowId


def question(program: Program) -> str:
    return _("How likely are you to recommend {program} to a friend? 0 = not at all, 10 = extremely likely.").format(
        program=html.escape(program.name)
    )


def keyboard(survey_id: int, chosen: int | None = None, *, skip: bool = False) -> InlineKeyboardMarkup:
    def button(score: int) -> InlineKeyboardButton:
        label = f"✅{score}" if score == chosen else str(score)
        return InlineKeyboardButton(text=label, callback_data=NpsScore(survey_id=survey_id, score=score).pack())

    rows = [[button(score) for score in range(0, 6)], [button(score) for score in range(6, 11)]]
    if skip:
        rows.append([InlineKeyboardButton(text=_("Skip"), callback_data=NpsSkip(survey_id=survey_id).pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)


@dataclass(frozen=True)
class _NewSurvey:
    """The claim on a survey: its row, UNIQUE per purchase; a survey that could not be sent is removed again."""

    member_id: int
    purchase_id: int | None

    async def take(self, session: DbSession, now: datetime) -> Survey | None:
        survey = await nps.create(session, self.member_id, self.purchase_id, now)
        return survey if survey is not None and survey.id is not None else None

    async def give_back(self, session: DbSession, taken: Survey) -> None:
        assert taken.id is not None
        await nps.forget(session, taken.id)


async def send_due_surveys(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    """Send every survey due at ``now``, each once; returns how many were sent. The scheduler calls it."""

    async def render(survey: Survey) -> Letter:
        assert survey.id is not None
        return Letter(question(program), keyboard(survey.id))

    sent = 0
    async with sessions() as session:
        for purchase, member in await nps.due(session, program, now):
            assert member.id is not None
            claim = _NewSurvey(member.id, purchase.id)
            outcome = await send_once(
                bot, session, i18n, claim, chat_id=member.chat_id, language=member.language, now=now, render=render
            )
            sent += outcome is Outcome.SENT
    return sent
