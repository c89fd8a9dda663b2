"""/language: English, Simplified or Traditional Chinese; every later reply follows the choice."""

from __future__ import annotations

from aiogram import Bot, F, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, MenuButton, slash
from handlers.menu import LANGUAGE, main_menu
from handlers.ui import drop_keyboard
from loyalty.members import LANGUAGES, MemberView, set_language
from loyalty.roles import Role
from notifications.menus import set_chat_menu
from notifications.texts import speaking
from storage.database import DbSession

# Each language is named in itself, so anyone can find their own whatever the current one is.
NAMES = {"en": "English", "zh-Hans": "简体中文", "zh-Hant": "繁體中文"}


class LanguageCallback(CallbackData, prefix="lang"):
    code: str


async def choose_language(message: Message) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=NAMES[code], callback_data=LanguageCallback(code=code).pack())
                for code in LANGUAGES
            ]
        ]
    )
    await message.answer(_("Choose your language:"), reply_markup=markup)


async def set_member_language(
    query: CallbackQuery,
    callback_data: LanguageCallback,
    session: DbSession,
    member: MemberView,
    role: Role,
    i18n: I18n,
    bot: Bot,
) -> None:
    await set_language(session, member.id, callback_data.code)
    with speaking(i18n, callback_data.code):
        await query.answer()
        text = _("Language set to English.")
        if isinstance(query.message, Message):
            await drop_keyboard(query.message)
        # A fresh menu keyboard, since its button labels are in the old language.
        await bot.send_message(member.chat_id, text, reply_markup=main_menu())
    await set_chat_menu(bot, i18n, member.chat_id, role, callback_data.code)


async def unknown_language(query: CallbackQuery) -> None:
    await query.answer(_("That language is not available."), show_alert=True)


def router() -> Router:
    router = Router(name="language")
    router.message.filter(IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(choose_language, slash("language"))
    router.message.register(choose_language, MenuButton(LANGUAGE))
    router.callback_query.register(set_member_language, LanguageCallback.filter(F.code.in_(LANGUAGES)))
    router.callback_query.register(unknown_language, LanguageCallback.filter())
    return router
