"""/start: join the program (optionally through a friend's link) and get the main menu."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime

from aiogram import Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.menu import main_menu
from handlers.ui import locale_of
from loyalty.members import join
from loyalty.program import Program
from storage.database import DbSession


async def start(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    user = message.from_user
    if user is None:  # a channel post or an anonymous admin: nobody to register
        return
    result = await join(
        session, program, telegram_id=user.id, chat_id=message.chat.id, first_name=user.first_name,
        last_name=user.last_name, username=user.username, language_code=user.language_code,
        payload=command.args, now=clock(),
    )
    member = result.member
    name = html.escape(member.first_name or _("there"))
    # A new member's language comes from their Telegram settings, which the middleware could not know yet.
    with i18n.use_locale(locale_of(member.language)):
        if result.created:
            text = _("Welcome to <b>{program}</b>, {name}! 🎉").format(program=html.escape(program.name), name=name)
            if result.welcome_points:
                text += "\n" + _("You got {points} welcome points.").format(points=result.welcome_points)
            text += "\n\n" + _(
                "Your member code is <code>{code}</code>. Show /card at the till to earn points."
            ).format(code=member.code)
        else:
            text = _("Welcome back to <b>{program}</b>, {name}! You have {points} points.").format(
                program=html.escape(program.name), name=name, points=member.points
            )
        await message.answer(text, reply_markup=main_menu())


def router() -> Router:
    router = Router(name="start")
    router.message.register(start, CommandStart())
    return router
