"""The main-menu keyboard, /help, and what the bot says to anything it does not understand."""

from __future__ import annotations

import html

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import KeyboardButton, Message, ReplyKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from handlers.commands import commands_for
from handlers.filters import MenuButton
from handlers.ui import N_
from loyalty.program import Program
from loyalty.roles import Role
from storage.models import Member

router = Router(name="menu")

BALANCE = N_("⭐ Balance")
CARD = N_("💳 My card")
HISTORY = N_("📜 History")
LANGUAGE = N_("🌐 Language")
HELP = N_("❓ Help")


def main_menu() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=_(BALANCE)), KeyboardButton(text=_(CARD))],
            [KeyboardButton(text=_(HISTORY)), KeyboardButton(text=_(LANGUAGE)), KeyboardButton(text=_(HELP))],
        ],
        resize_keyboard=True,
        is_persistent=True,
    )


@router.message(Command("help"))
@router.message(MenuButton(HELP))
async def help_command(message: Message, role: Role, program: Program) -> None:
    lines = [_("<b>{program}</b> — what I can do for you:").format(program=html.escape(program.name)), ""]
    lines += [f"/{command} — {description}" for command, description in commands_for(role)]
    await message.answer("\n".join(lines))


def register_fallbacks(root: Router) -> None:
    """Included last, so these run only when no feature handled the message."""
    fallback = Router(name="fallback")

    @fallback.message(F.text.startswith("/"), Command(commands_for_anyone(), ignore_case=True))
    async def needs_role_or_join(message: Message, command: CommandObject, member: Member | None) -> None:
        # Reached when a feature's role or membership filter refused: say no without saying why in detail.
        if command.command.lower() in STAFF_ONLY:
            await message.answer(_("Sorry, that command is only for the shop's staff."))
        else:
            await message.answer(_("You are not a member yet. Send /start to join."))

    @fallback.message(F.text.startswith("/"))
    async def unknown_command(message: Message) -> None:
        await message.answer(_("I don't know that command. Send /help to see what I can do."))

    @fallback.message(F.chat.type == "private")
    async def anything_else(message: Message, member: Member | None) -> None:
        if member is None:
            await message.answer(_("You are not a member yet. Send /start to join."))
        else:
            await message.answer(_("Please use the menu below or send /help."), reply_markup=main_menu())

    root.include_router(fallback)


STAFF_ONLY = frozenset({"purchase", "adjust"})


def commands_for_anyone() -> list[str]:
    return [command for command, _description in commands_for(Role.OWNER)]
