"""Telegram command menus by role and language, set with command scopes, and the menu button."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    MenuButtonDefault,
    MenuButtonWebApp,
    WebAppInfo,
)
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n.lazy_proxy import LazyProxy

from loyalty.roles import Role
from notifications.texts import locale_of

log = logging.getLogger(__name__)

_MEMBER: list[tuple[str, LazyProxy]] = [
    ("start", __("Join, or show the main menu")),
    ("balance", __("Your points and what expires soon")),
    ("history", __("Your points history")),
    ("card", __("Your member card for the till")),
    ("rewards", __("Spend your points on rewards")),
    ("coupons", __("Your coupons")),
    ("checkin", __("Daily check-in: points and your streak")),
    ("missions", __("Missions: goals that pay points")),
    ("vip", __("VIP membership: benefits and price in Stars")),
    ("feedback", __("Write to our team")),
    ("refer", __("Invite friends and earn points")),
    ("share", __("Share a post, review or photo for points")),
    ("profile", __("Your birthday, favourites and phone")),
    ("settings", __("Promotions and language")),
    ("language", __("Choose your language")),
    ("mydata", __("Download your data")),
    ("deleteme", __("Erase your data")),
    ("paysupport", __("Help with payments and refunds")),
    ("id", __("Your Telegram id")),
    ("help", __("What I can do")),
]
_CASHIER = [
    ("purchase", __("Record a purchase: member, amount")),
    ("redeem", __("Accept a member's coupon")),
    ("refund", __("Refund a purchase by its receipt")),
]
_SUPPORT = [
    ("inbox", __("Open feedback threads, longest waiting first")),
    ("thread", __("A whole feedback thread")),
    ("reply", __("Answer a thread: thread, text")),
    ("close", __("Close a thread")),
    ("setbirthday", __("Correct a member's birthday")),
]
_ADMIN = [
    ("adjust", __("Add or remove a member's points")),
    ("audit", __("What staff did to points, newest first")),
    ("reward", __("Add, list or disable rewards")),
    ("campaign", __("Start, list or end a points campaign")),
    ("broadcast", __("Send a promotion to members")),
    ("broadcasts", __("Broadcasts: progress, pause, resume, cancel")),
    ("stats", __("Program figures and charts: 7d, 30d, 90d, 12m")),
    ("export", __("Members, purchases and points as CSV files")),
    ("vip_refund", __("Refund a VIP payment: member, charge id")),
    ("staff", __("Invite staff, list them, remove a role")),
]

_BY_ROLE = {
    Role.MEMBER: _MEMBER,
    Role.SUPPORT: _MEMBER + _SUPPORT,
    Role.CASHIER: _MEMBER + _CASHIER,
    Role.ADMIN: _MEMBER + _CASHIER + _SUPPORT + _ADMIN,
    Role.OWNER: _MEMBER + _CASHIER + _SUPPORT + _ADMIN,
}


def command_names(role: Role) -> list[str]:
    return [name for name, _description in _BY_ROLE[role]]


def commands_for(role: Role) -> list[tuple[str, str]]:
    """Command names and descriptions in the current locale."""
    return [(name, str(description)) for name, description in _BY_ROLE[role]]


def _bot_commands(i18n: I18n, role: Role, locale: str) -> list[BotCommand]:
    with i18n.context(), i18n.use_locale(locale):
        return [BotCommand(command=name, description=description) for name, description in commands_for(role)]


async def set_default_menus(bot: Bot, i18n: I18n) -> None:
    """Members' commands for everyone: English by default, Simplified Chinese for Chinese clients.

    Telegram keys menus by two-letter language code only, so Traditional Chinese is set per chat once the
    member picks it (``set_chat_menu``).
    """
    scope = BotCommandScopeDefault()
    await bot.set_my_commands(_bot_commands(i18n, Role.MEMBER, "en"), scope=scope)
    await bot.set_my_commands(_bot_commands(i18n, Role.MEMBER, "zh_Hans"), scope=scope, language_code="zh")


async def set_chat_menu(bot: Bot, i18n: I18n, chat_id: int, role: Role, language: str | None) -> None:
    """A chat's own menu: its role's commands, in its chosen language (else English / Simplified)."""
    scope = BotCommandScopeChat(chat_id=chat_id)
    default = locale_of(language) if language else "en"
    chinese = locale_of(language) if language else "zh_Hans"
    await bot.set_my_commands(_bot_commands(i18n, role, default), scope=scope)
    await bot.set_my_commands(_bot_commands(i18n, role, chinese), scope=scope, language_code="zh")


async def set_staff_menus(bot: Bot, i18n: I18n, staff: dict[int, tuple[Role, str | None]]) -> None:
    """Staff see their commands in their private chat with the bot (chat id == user id)."""
    for telegram_id, (role, language) in staff.items():
        if role is not Role.MEMBER:
            await set_chat_menu(bot, i18n, telegram_id, role, language)


async def refresh_chat_menu(bot: Bot, i18n: I18n, telegram_id: int, role: Role, language: str | None) -> None:
    """Their private chat's command menu follows a new role (chat id == user id), from the chat or the console."""
    try:
        await set_chat_menu(bot, i18n, telegram_id, role, language)
    except TelegramAPIError:  # they never opened a chat with the bot, say: the menu follows on the next start
        log.warning("could not refresh the command menu of %s", telegram_id, exc_info=True)


async def set_menu_button(bot: Bot, program_name: str, webapp_url: str | None) -> None:
    """The button beside the message field opens the Mini App, labelled with the shop's name (it reads right in
    any language); without an app, the command list again, should an earlier start have set the app."""
    button = MenuButtonWebApp(text=program_name[:64], web_app=WebAppInfo(url=webapp_url)) if webapp_url else None
    await bot.set_chat_menu_button(menu_button=button or MenuButtonDefault())
