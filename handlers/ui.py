"""Edits of the bot's own messages in reply to a tap: what every handler module shares beyond the texts."""

from __future__ import annotations

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message, WebAppInfo
from aiogram.utils.i18n import gettext as _


async def edit_or_keep(message: Message, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Edit a message in place; a double tap that would change nothing is not an error."""
    try:
        await message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as exc:
        if "message is not modified" not in exc.message:
            raise


async def drop_keyboard(message: Message) -> None:
    """Remove a message's inline keyboard once its choice is made; a replayed tap finds it gone already."""
    try:
        await message.edit_reply_markup(reply_markup=None)
    except TelegramBadRequest as exc:
        if "message is not modified" not in exc.message:
            raise


def app_rows(webapp_url: str | None, screen: str | None = None) -> list[list[InlineKeyboardButton]]:
    """An "Open app" button that opens the Mini App at ``screen``; none while LOYALTY_WEBAPP_URL is unset."""
    if not webapp_url:
        return []
    url = f"{webapp_url}?screen={screen}" if screen else webapp_url
    return [[InlineKeyboardButton(text=_("📱 Open app"), web_app=WebAppInfo(url=url))]]


def app_markup(webapp_url: str | None, screen: str | None = None) -> InlineKeyboardMarkup | None:
    rows = app_rows(webapp_url, screen)
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None
