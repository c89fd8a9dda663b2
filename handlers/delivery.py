"""Sending scheduled messages: what a Telegram error means for the member and for the claim on the message."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from enum import Enum
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramRetryAfter

from loyalty.privacy import mark_blocked
from storage.database import DbSession

log = logging.getLogger(__name__)

RETRIES_AFTER_429 = 3


class Outcome(Enum):
    SENT = "sent"
    GONE = "gone"  # the member blocked the bot: marked, and skipped from now on
    RETRY = "retry"  # anything else: release the claim so the next run tries again


async def deliver(bot: Bot, session: DbSession, chat_id: int, text: str, now: datetime, **kwargs: Any) -> Outcome:
    """Send to a private chat (its id is the person's Telegram id)."""
    for _ in range(RETRIES_AFTER_429 + 1):
        try:
            await bot.send_message(chat_id, text, **kwargs)
            return Outcome.SENT
        except TelegramRetryAfter as exc:
            # Telegram's flood control: wait as told and go on with this message.
            await asyncio.sleep(exc.retry_after)
        except TelegramForbiddenError:
            await mark_blocked(session, chat_id, True, now)
            return Outcome.GONE
        except TelegramAPIError:
            log.warning("scheduled message to chat %s failed; retrying on the next run", chat_id, exc_info=True)
            return Outcome.RETRY
    return Outcome.RETRY
