"""Members' control: /settings (promotions, language), /mydata (a JSON export), /deleteme (erasure), and
noticing when a member blocks the bot."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from aiogram import Bot, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardRemove,
)
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, MenuButton, slash
from handlers.language import choose_language
from handlers.menu import SETTINGS
from handlers.ui import drop_keyboard, edit_or_keep
from loyalty import privacy
from loyalty.members import MemberView
from notifications.vip import stop_renewal
from storage.database import DbSession


class SettingsChoice(StrEnum):
    PROMOTIONS = "promotions"
    LANGUAGE = "language"


class SettingsAction(CallbackData, prefix="st"):
    action: SettingsChoice
    on: bool = False  # for "promotions": the state to set, so a replayed tap changes nothing


class EraseAction(CallbackData, prefix="del"):
    confirm: bool


def _settings_view(promotions: bool) -> tuple[str, InlineKeyboardMarkup]:
    state = _("on") if promotions else _("off")
    text = "\n".join(
        [
            _("⚙️ <b>Settings</b>"),
            "",
            _("📣 Promotions and offers: <b>{state}</b>").format(state=state),
            _("Service messages (points earned, coupons, answers to your feedback) always reach you."),
        ]
    )
    toggle = _("🔕 Turn promotions off") if promotions else _("🔔 Turn promotions on")
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=toggle,
                    callback_data=SettingsAction(action=SettingsChoice.PROMOTIONS, on=not promotions).pack(),
                )
            ],
            [
                InlineKeyboardButton(
                    text=_("🌐 Language"), callback_data=SettingsAction(action=SettingsChoice.LANGUAGE).pack()
                )
            ],
        ]
    )
    return text, markup


async def show_settings(message: Message, session: DbSession, member: MemberView) -> None:
    text, markup = _settings_view(await privacy.promotions_on(session, member.id))
    await message.answer(text, reply_markup=markup)


async def settings_action(
    query: CallbackQuery, callback_data: SettingsAction, session: DbSession, member: MemberView
) -> None:
    if callback_data.action is SettingsChoice.LANGUAGE:
        await query.answer()
        if isinstance(query.message, Message):
            await choose_language(query.message)
        return
    if callback_data.action is not SettingsChoice.PROMOTIONS:
        await query.answer(_("That choice is not available."), show_alert=True)
        return
    await privacy.set_promotions(session, member.id, callback_data.on)
    await query.answer(_("Promotions are on.") if callback_data.on else _("Promotions are off."))
    if isinstance(query.message, Message):
        text, markup = _settings_view(callback_data.on)
        await edit_or_keep(query.message, text, markup)


async def my_data(message: Message, session: DbSession, member: MemberView) -> None:
    data = await privacy.export(session, member.id)
    document = BufferedInputFile(
        json.dumps(data, ensure_ascii=False, indent=2).encode(), filename=f"my-data-{member.code}.json"
    )
    await message.answer_document(document, caption=_("📦 Everything we keep about you, as a JSON file."))


async def delete_me(message: Message) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=_("🗑 Yes, erase my data"), callback_data=EraseAction(confirm=True).pack()),
                InlineKeyboardButton(text=_("Cancel"), callback_data=EraseAction(confirm=False).pack()),
            ]
        ]
    )
    await message.answer(
        _(
            "⚠️ This erases your name, username, phone number, birthday, favourites and everything you shared with us, "
            "and I will send you nothing more. Your purchases and points stay, anonymously, in the shop's accounts.\n\n"
            "Erase your data?"
        ),
        reply_markup=markup,
    )


async def erase(
    query: CallbackQuery,
    callback_data: EraseAction,
    session: DbSession,
    member: MemberView,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await drop_keyboard(query.message)
    if not callback_data.confirm:
        await bot.send_message(member.chat_id, _("Nothing was erased."))
        return
    now = clock()
    await privacy.erase(session, member.id, now)
    await stop_renewal(bot, session, member.id, member.telegram_id, now)  # nothing is charged after they left
    await bot.send_message(
        member.chat_id,
        _(
            "Your personal data has been erased and I will not message you again. "
            "If you ever want to come back, send /start."
        ),
        reply_markup=ReplyKeyboardRemove(),
    )


async def chat_member_changed(event: ChatMemberUpdated, session: DbSession, clock: Callable[[], datetime]) -> None:
    # Only private chats: the bot's own status in the staff group says nothing about a member.
    if event.chat.type != "private":
        return
    status = event.new_chat_member.status
    if status == "kicked":
        await privacy.mark_blocked(session, event.chat.id, True, clock())
    elif status == "member":
        await privacy.mark_blocked(session, event.chat.id, False, clock())


def router() -> Router:
    router = Router(name="privacy")
    router.message.filter(IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(show_settings, slash("settings"))
    router.message.register(show_settings, MenuButton(SETTINGS))
    router.message.register(my_data, slash("mydata"))
    router.message.register(delete_me, slash("deleteme"))
    router.callback_query.register(settings_action, SettingsAction.filter())
    router.callback_query.register(erase, EraseAction.filter())
    return router


def chat_member_router() -> Router:
    router = Router(name="blocked")
    router.my_chat_member.register(chat_member_changed)
    return router
