"""The last line of defence: log the failing update, apologise in the user's language, keep running."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot, Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.exceptions import TelegramAPIError
from aiogram.types import ErrorEvent, Update
from aiogram.utils.i18n import I18n
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from loyalty.members import MemberView
from notifications.texts import user_locale
from storage.database import is_unavailable

log = logging.getLogger(__name__)


def describe(update: Update) -> str:
    """The update as Telegram sent it, for the log. Never raises: aiogram fills unset fields with ``Default``
    sentinels that pydantic cannot serialise (every message carrying ``link_preview_options``), so only what was
    set is shown, and anything odd left is shown by its repr."""
    try:
        return update.model_dump_json(exclude_unset=True, exclude_none=True, by_alias=True, fallback=repr)
    except Exception:  # the log line must be written whatever the update holds
        return f"#{update.update_id} ({type(update).__name__})"


def _unavailable(error: BaseException) -> bool:
    return is_unavailable(error) or isinstance(error, RedisConnectionError | RedisTimeoutError)


async def on_error(event: ErrorEvent, bot: Bot, i18n: I18n, member: MemberView | None = None) -> Any:
    """Apologise for every failing update. One that failed because the database or Redis did not answer is then
    left unhandled (aiogram raises it again): a webhook answers 5xx and Telegram delivers it again later."""
    update = event.update
    retry = _unavailable(event.exception)
    log.error("update %s failed: %s", describe(update), event.exception, exc_info=event.exception)
    user, chat_id = None, None
    if update.message is not None:
        user, chat_id = update.message.from_user, update.message.chat.id
    elif update.callback_query is not None:
        user = update.callback_query.from_user
        chat_id = update.callback_query.message.chat.id if update.callback_query.message else user.id
    if chat_id is None:
        return UNHANDLED if retry else True
    text = i18n.gettext("Sorry, something went wrong. Please try again in a moment.", locale=user_locale(member, user))
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(text, show_alert=True)
        else:
            await bot.send_message(chat_id, text)
    except TelegramAPIError:
        log.warning("could not tell chat %s about the error", chat_id, exc_info=True)
    return UNHANDLED if retry else True


def router() -> Router:
    router = Router(name="errors")
    router.errors.register(on_error)
    return router
