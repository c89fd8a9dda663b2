"""Edits of the bot's own messages in reply to a tap: what every handler module shares beyond the texts."""

from __future__ import annotations

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, Message


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
