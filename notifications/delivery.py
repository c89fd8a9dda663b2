"""Sending what the bot says on its own, once: claim the message, render it, send it, and release the claim if
Telegram failed in a way worth retrying, so the next run tries again.

Every scheduled job that messages people goes through :func:`send_once`; what differs between them is what is
claimed (a notice row, a survey, a member's expiring lots) and what is said.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol, TypeVar

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n

from loyalty import notices
from loyalty.privacy import mark_blocked
from notifications.texts import speaking
from storage.database import DbSession

log = logging.getLogger(__name__)

RETRIES_AFTER_429 = 3

T = TypeVar("T")


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


@dataclass(frozen=True)
class Letter:
    text: str
    markup: InlineKeyboardMarkup | None = None


class Claim(Protocol[T]):
    """The right to send one message: taken before sending (None: someone else has it), given back on failure."""

    async def take(self, session: DbSession, now: datetime) -> T | None: ...

    async def give_back(self, session: DbSession, taken: T) -> None: ...


@dataclass(frozen=True)
class Notice:
    """The usual claim: a row in ``notice``, UNIQUE on (kind, person, period, seq)."""

    kind: str
    telegram_id: int
    period: str
    seq: int = 0

    async def take(self, session: DbSession, now: datetime) -> bool | None:
        return True if await notices.claim(session, self.kind, self.telegram_id, self.period, now, self.seq) else None

    async def give_back(self, session: DbSession, taken: bool) -> None:
        await notices.release(session, self.kind, self.telegram_id, self.period, self.seq)


async def send_once(
    bot: Bot,
    session: DbSession,
    i18n: I18n,
    claim: Claim[T],
    *,
    chat_id: int,
    language: str,
    now: datetime,
    render: Callable[[T], Awaitable[Letter | None]],
) -> Outcome | None:
    """Claim, render in ``language``, send, release on a failure worth retrying.

    None: the claim was someone else's (a second scheduler, or an earlier run), or ``render`` decided there is
    nothing to say; the claim is then kept, so nobody says it later either."""
    taken = await claim.take(session, now)
    if taken is None:
        return None
    with speaking(i18n, language):
        letter = await render(taken)
    if letter is None:
        return None
    outcome = await deliver(bot, session, chat_id, letter.text, now, reply_markup=letter.markup)
    if outcome is Outcome.RETRY:
        await claim.give_back(session, taken)
    return outcome
