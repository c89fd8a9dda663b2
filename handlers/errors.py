"""The last line of defence: log the failing update, apologise in the user's language, keep running."""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent, User
from aiogram.utils.i18n import I18n
from sqlalchemy import inspect

from handlers.ui import locale_of, user_locale
from storage.models import Member

log = logging.getLogger(__name__)


async def on_error(event: ErrorEvent, bot: Bot, i18n: I18n, member: Member | None = None) -> bool:
    update = event.update
    log.error("update %s failed: %s", update.model_dump_json(exclude_none=True), event.exception,
              exc_info=event.exception)
    user, chat_id = None, None
    if update.message is not None:
        user, chat_id = update.message.from_user, update.message.chat.id
    elif update.callback_query is not None:
        user = update.callback_query.from_user
        chat_id = update.callback_query.message.chat.id if update.callback_query.message else user.id
    if chat_id is None:
        return True
    text = i18n.gettext("Sorry, something went wrong. Please try again in a moment.", locale=_locale(member, user))
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(text, show_alert=True)
        else:
            await bot.send_message(chat_id, text)
    except TelegramAPIError:
        log.warning("could not tell chat %s about the error", chat_id, exc_info=True)
    return True


def _locale(member: Member | None, user: User | None) -> str:
    # The member object may have been expired by the failed handler's rollback; read only what is loaded.
    language = inspect(member).dict.get("language") if member is not None else None
    return locale_of(language) if isinstance(language, str) else user_locale(None, user)


def router() -> Router:
    router = Router(name="errors")
    router.errors.register(on_error)
    return router
