"""The main-menu keyboard, /help, and what the bot says to anything it does not understand."""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, KeyboardButton, Message, ReplyKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from handlers.filters import MenuButton, SlashCommand, slash
from handlers.ui import app_markup
from loyalty.members import MemberView
from loyalty.profile import normalize_phone
from loyalty.program import Program
from loyalty.roles import Permission, Role, can
from notifications.menus import command_names, commands_for
from notifications.texts import N_

BALANCE = N_("⭐ Balance")
CARD = N_("💳 My card")
HISTORY = N_("📜 History")
LANGUAGE = N_("🌐 Language")
HELP = N_("❓ Help")
REWARDS = N_("🎁 Rewards")
INVITE = N_("👥 Invite friends")
SHARE = N_("📣 Share & earn")
PROFILE = N_("👤 Profile")
SETTINGS = N_("⚙️ Settings")
FEEDBACK = N_("💬 Feedback")
CHECKIN = N_("📅 Check in")


def main_menu() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=_(BALANCE)), KeyboardButton(text=_(CARD)), KeyboardButton(text=_(REWARDS))],
            [KeyboardButton(text=_(HISTORY)), KeyboardButton(text=_(INVITE)), KeyboardButton(text=_(SHARE))],
            # Language lives in Settings now; its old button still works on keyboards sent before.
            [KeyboardButton(text=_(FEEDBACK)), KeyboardButton(text=_(PROFILE)), KeyboardButton(text=_(SETTINGS))],
            [KeyboardButton(text=_(CHECKIN)), KeyboardButton(text=_(HELP))],
        ],
        resize_keyboard=True,
        is_persistent=True,
    )


def share_phone_keyboard() -> ReplyKeyboardMarkup:
    """Telegram's own button for a member's phone number: it sends this account's number, so nobody can type
    in someone else's."""
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=_("📱 Share my phone number"), request_contact=True)],
            [KeyboardButton(text=_("Not now"))],
        ],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def _looks_like_a_phone(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    return 7 <= digits <= 15 and normalize_phone(text) is not None


async def help_command(message: Message, role: Role, program: Program, webapp_url: str | None = None) -> None:
    lines = [_("<b>{program}</b> — what I can do for you:").format(program=html.escape(program.name)), ""]
    lines += [f"/{command} — {description}" for command, description in commands_for(role)]
    # Staff at the till get the app's till (scan a member, record, redeem) a tap away.
    till = webapp_url if can(role, Permission.RECORD_PURCHASE) else None
    await message.answer("\n".join(lines), reply_markup=app_markup(till, "till"))


# Every command in a staff menu and in no member's: the one list of commands is notifications.menus.
STAFF_ONLY = frozenset(command_names(Role.OWNER)) - frozenset(command_names(Role.MEMBER))


async def needs_role_or_join(message: Message, command: CommandObject) -> None:
    # Reached when a feature's role or membership filter refused: say no without saying why in detail.
    if command.command.lower() in STAFF_ONLY:
        await message.answer(_("Sorry, that command is only for the shop's staff."))
    else:
        await message.answer(_("You are not a member yet. Send /start to join."))


async def cancel(message: Message, state: FSMContext) -> None:
    """Drop a pending question (a birthday, content to share); harmless when nothing is pending."""
    if await state.get_state() is None:
        await message.answer(_("There is nothing to cancel."), reply_markup=main_menu())
        return
    await state.clear()
    await message.answer(_("Cancelled."), reply_markup=main_menu())


async def unknown_command(message: Message) -> None:
    await message.answer(_("I don't know that command. Send /help to see what I can do."))


async def anything_else(message: Message, member: MemberView | None) -> None:
    if member is None:
        await message.answer(_("You are not a member yet. Send /start to join."))
    elif message.text and _looks_like_a_phone(message.text):
        await message.answer(
            _(
                "To save your phone number, tap 📱 Share my phone number below: Telegram sends the number of "
                "this account."
            ),
            reply_markup=share_phone_keyboard(),
        )
    else:
        await message.answer(_("Please use the menu below or send /help."), reply_markup=main_menu())


def router() -> Router:
    router = Router(name="menu")
    router.message.register(help_command, slash("help"))
    router.message.register(help_command, MenuButton(HELP))
    router.message.register(cancel, slash("cancel"))
    return router


async def stale_button(query: CallbackQuery, member: MemberView | None = None) -> None:
    """A tap no feature took: a button from an older version of the bot, callback data made up by hand, or a
    member's button pressed by someone who is not (or no longer) a member."""
    if member is None:
        await query.answer(_("You are not a member yet. Send /start to join."), show_alert=True)
        return
    await query.answer(_("This button is no longer valid."), show_alert=True)


async def refuse_button(query: CallbackQuery) -> None:
    """A staff button (a broadcast's controls, say) pressed by someone without the role: answered, not ignored."""
    await query.answer(_("Sorry, that button is only for the shop's staff."), show_alert=True)


def fallback_router() -> Router:
    """Included last, so these run only when no feature handled the message."""
    router = Router(name="fallback")
    router.message.register(needs_role_or_join, Command(*command_names(Role.OWNER), ignore_case=True))
    router.message.register(unknown_command, SlashCommand())
    router.message.register(anything_else)
    return router


def stale_buttons_router() -> Router:
    """Included after every router, private or group: a tap is always answered, so no spinner turns forever."""
    router = Router(name="stale-buttons")
    router.callback_query.register(stale_button)
    return router
