"""Requests for staff review (suspicious referrals, shared content) in the support chat.

They go to the support chat (``LOYALTY_SUPPORT_CHAT_ID``) in the program's ``staff_language``; a merchant
without one gets them in the admins' private chats instead, so nothing waits unseen.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from loyalty.program import Program
from loyalty.roles import Permission, Role, can
from notifications.texts import speaking

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaffChats:
    """Where review requests go: the support chat, else each admin's private chat (handler data ``staff_chats``)."""

    support_chat_id: int | None = None
    admin_ids: frozenset[int] = frozenset()

    def ids(self) -> list[int]:
        if self.support_chat_id is not None:
            return [self.support_chat_id]
        return sorted(self.admin_ids)


async def ask_staff(
    bot: Bot,
    staff_chats: StaffChats,
    i18n: I18n,
    program: Program,
    render: Callable[[], str],
    buttons: Callable[[], InlineKeyboardMarkup],
    photo: str | None = None,
) -> int:
    """Post a review request (its text and buttons in the staff's language); returns how many chats got it."""
    with speaking(i18n, program.staff_language):
        text, markup = render(), buttons()
    delivered = 0
    for chat_id in staff_chats.ids():
        try:
            if photo is not None:
                await bot.send_photo(chat_id, photo, caption=text, reply_markup=markup)
            else:
                await bot.send_message(chat_id, text, reply_markup=markup)
            delivered += 1
        except TelegramAPIError:
            log.warning("could not post a review request to chat %s", chat_id, exc_info=True)
    if not delivered:
        log.error("a review request reached no staff chat: set LOYALTY_SUPPORT_CHAT_ID or LOYALTY_ADMIN_IDS")
    return delivered


async def refuse_non_moderator(query: CallbackQuery, role: Role) -> bool:
    """Answer a moderation button pressed by someone who may not moderate; True if refused."""
    if can(role, Permission.MODERATE):
        return False
    await query.answer(_("Only the shop's staff can decide this."), show_alert=True)
    return True


async def close_review(query: CallbackQuery, i18n: I18n, program: Program, decision: Callable[[], str]) -> None:
    """Close a review message for everyone in the staff chat: append who decided what, drop its buttons."""
    message = query.message
    if not isinstance(message, Message):
        return
    with speaking(i18n, program.staff_language):
        note = _("{decision} by {staff}.").format(decision=decision(), staff=html.escape(query.from_user.full_name))
    text = f"{message.html_text}\n\n{note}"
    try:
        if message.photo:
            await message.edit_caption(caption=text, reply_markup=None)
        else:
            await message.edit_text(text, reply_markup=None)
    except TelegramBadRequest as exc:
        if "message is not modified" not in exc.message:
            raise
