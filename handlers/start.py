"""/start: join the program (optionally through a friend's link) and get the main menu."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, Router
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.menu import main_menu
from handlers.referral import after_join
from handlers.staff import StaffChats
from handlers.ui import app_markup
from loyalty.members import JoinResult, join
from loyalty.program import Program
from loyalty.referrals import LinkProblem
from notifications.texts import locale_of, money, speaking
from storage.database import DbSession


async def start(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    bot: Bot,
    staff_chats: StaffChats,
    clock: Callable[[], datetime],
    webapp_url: str | None = None,
) -> None:
    user = message.from_user
    if user is None:  # a channel post or an anonymous admin: nobody to register
        return
    result = await join(
        session,
        program,
        telegram_id=user.id,
        chat_id=message.chat.id,
        first_name=user.first_name,
        last_name=user.last_name,
        username=user.username,
        language_code=user.language_code,
        payload=command.args,
        now=clock(),
    )
    member = result.member
    name = html.escape(member.first_name or _("there"))
    # A new member's language comes from their Telegram settings, which the middleware could not know yet.
    with speaking(i18n, member.language):
        if result.created:
            text = _("Welcome to <b>{program}</b>, {name}! 🎉").format(program=html.escape(program.name), name=name)
            if result.welcome_points:
                text += "\n" + ngettext(
                    "You got {points} welcome point.", "You got {points} welcome points.", result.welcome_points
                ).format(points=result.welcome_points)
            text += "\n\n" + _(
                "Your member code is <code>{code}</code>. Show /card at the till to earn points."
            ).format(code=member.code)
        else:
            text = ngettext(
                "Welcome back to <b>{program}</b>, {name}! You have {points} point.",
                "Welcome back to <b>{program}</b>, {name}! You have {points} points.",
                member.points,
            ).format(program=html.escape(program.name), name=name, points=member.points)
            if result.returned:
                text += "\n" + _(
                    "Your personal data was erased earlier; your points and coupons are still yours. "
                    "Promotions stay off until you turn them on in /settings."
                )
        if note := _referral_note(result, program):
            text += "\n\n" + note
        await message.answer(text, reply_markup=main_menu())
        if webapp_url:  # the menu is a reply keyboard: the app's inline button needs a message of its own
            await message.answer(
                _("Your card, rewards and history are also in the app:"), reply_markup=app_markup(webapp_url)
            )
    if result.referral is not None:
        await after_join(bot, i18n, staff_chats, program, result.referral, member)


def _referral_note(result: JoinResult, program: Program) -> str:
    linked = result.referral
    if linked is None:
        return ""
    if linked.problem is LinkProblem.OWN_LINK:
        return _("That is your own invitation link: share it with friends instead! /refer")
    if linked.problem is LinkProblem.ALREADY_MEMBER:
        return _("Invitation links are for new members, and you are one already.")
    if linked.problem is LinkProblem.UNKNOWN_CODE:
        return _("That invitation link is not valid, but you are in all the same.")
    referrer = html.escape(linked.referrer.first_name if linked.referrer else "") or _("a friend")
    if linked.held:
        return _("You were invited by {referrer}. Your invitation bonus is being checked and will follow soon.").format(
            referrer=referrer
        )
    if linked.friend_points:
        return ngettext(
            "You got {points} bonus point for joining through {referrer}'s invitation.",
            "You got {points} bonus points for joining through {referrer}'s invitation.",
            linked.friend_points,
        ).format(points=linked.friend_points, referrer=referrer)
    rules = program.referrals
    if rules.friend_bonus:
        return ngettext(
            "You were invited by {referrer}: your first purchase of {amount} or more earns you {points} bonus point.",
            "You were invited by {referrer}: your first purchase of {amount} or more earns you {points} bonus points.",
            rules.friend_bonus,
        ).format(
            referrer=referrer,
            points=rules.friend_bonus,
            amount=money(rules.qualifying_amount, program.currency, locale_of(result.member.language)),
        )
    return _("You were invited by {referrer}.").format(referrer=referrer)


def router() -> Router:
    router = Router(name="start")
    router.message.register(start, CommandStart(ignore_case=True))
    return router
