"""/feedback: members write to the shop (text, photo, voice, ...); an open thread carries every later message to
staff until it is closed; members rate the answer 1–5 when it is."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiogram import Bot, Router
from aiogram.filters import Filter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, ReactionTypeEmoji
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, MenuButton, NotCommand, slash
from handlers.menu import FEEDBACK
from handlers.support import Csat, Desk, content_kind, relay_to_staff
from handlers.ui import drop_keyboard
from loyalty import feedback
from loyalty.members import MemberView
from loyalty.program import Program
from storage.database import DbSession


class FeedbackInput(StatesGroup):
    writing = State()


async def start_feedback(message: Message, session: DbSession, member: MemberView, state: FSMContext) -> None:
    if await feedback.open_thread_of(session, member.id) is not None:
        await message.answer(_("Your conversation with our team is open: just write here, and they will answer here."))
        return
    await state.set_state(FeedbackInput.writing)
    await message.answer(
        _("💬 Write your message to our team: text, a photo or a voice message.") + "\n" + _("Send /cancel to stop.")
    )


RECEIVED = "👌"  # one of the reactions Telegram allows


class Writing(Filter):
    """The member asked to write (/feedback), has a thread open, or had one closed lately (writing again reopens
    it): their message is for staff. Anything else they type gets the menu's help instead."""

    async def __call__(
        self,
        message: Message,
        session: DbSession,
        state: FSMContext,
        clock: Callable[[], datetime],
        member: MemberView | None = None,
    ) -> bool:
        if member is None:
            return False
        if await state.get_state() == FeedbackInput.writing.state:
            return True
        return await feedback.continues_thread(session, member.id, clock())


async def relay(
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
    kind = content_kind(message)
    if kind is None:
        await message.answer(_("I can pass on text, photos, voice messages, videos and files."))
        return
    now = clock()
    if await feedback.just_thanks(session, member.id, message.text):
        await message.answer(_("You're welcome! 😊 Write any time if there is anything else."))
        return
    received = await feedback.member_says(
        session,
        member.id,
        source_key=f"m:{message.chat.id}:{message.message_id}",
        kind=kind,
        text=message.html_text if (message.text or message.caption) else None,
        file_id=_file_id(message, kind),
        now=now,
    )
    await state.clear()
    if received.message is None:
        return  # a redelivered update
    if received.reopened:
        await message.answer(_("✅ Your conversation with our team is open again; they will answer you here."))
    elif received.opened:
        await message.answer(_("✅ Thank you! Your message reached our team; they will answer you here."))
    else:  # a follow-up in an open thread: a reaction says it arrived, without another message
        await message.react([ReactionTypeEmoji(emoji=RECEIVED)])
    await relay_to_staff(bot, desk, session, i18n, program, received, source=message, now=now)


def _file_id(message: Message, kind: str) -> str | None:
    content: Any = getattr(message, kind, None)
    if isinstance(content, list):  # photo sizes: the largest is last
        content = content[-1]
    return getattr(content, "file_id", None)


async def rate(
    query: CallbackQuery, callback_data: Csat, session: DbSession, member: MemberView, clock: Callable[[], datetime]
) -> None:
    if not 1 <= callback_data.rating <= 5:
        await query.answer(_("That choice is not available."), show_alert=True)
        return
    if not await feedback.rate(session, callback_data.thread_id, member.id, callback_data.rating, clock()):
        await query.answer(_("You have rated this conversation already. Thank you!"))
        return
    await query.answer()
    if isinstance(query.message, Message):
        await drop_keyboard(query.message)
        await query.message.answer(_("Thank you for your rating: {stars}").format(stars="⭐" * callback_data.rating))


def router() -> Router:
    router = Router(name="feedback")
    router.message.filter(IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(start_feedback, slash("feedback"))
    router.message.register(start_feedback, MenuButton(FEEDBACK))
    router.callback_query.register(rate, Csat.filter())
    return router


def input_router() -> Router:
    """A member's message to staff; included after every feature so commands and menu buttons still work."""
    router = Router(name="feedback-input")
    router.message.filter(IsMember(), NotCommand(), Writing())
    router.message.register(relay)
    return router
