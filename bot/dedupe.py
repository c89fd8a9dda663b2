"""Telegram redelivers an update its webhook did not acknowledge; one already handled is skipped here.

An update is marked only once its handler finished, so a worker that died half-way leaves it unmarked and the
redelivery is handled in full. This is the one-process record (a webhook without Redis); with Redis the record is
shared by every worker and kept by ``bot.gate``, in the round trips that take the conversation's lock. Either
way the database's natural keys (a purchase by its message, a join by the user) change the data once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject, Update

log = logging.getLogger(__name__)

# Telegram gives up redelivering after about a day.
KEEP_SECONDS = 24 * 3600


class SeenUpdates(Protocol):
    async def seen(self, key: str) -> bool: ...

    async def mark(self, key: str) -> None: ...


class MemorySeenUpdates:
    """One process: the latest ``size`` update ids."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    async def seen(self, key: str) -> bool:
        return key in self._keys

    async def mark(self, key: str) -> None:
        self._keys[key] = None
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)


class DropRedelivered(BaseMiddleware):
    def __init__(self, seen: SeenUpdates) -> None:
        self.seen_updates = seen

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        bot: Bot | None = data.get("bot")
        if not isinstance(event, Update) or bot is None:
            return await handler(event, data)
        key = f"{bot.id}:{event.update_id}"  # update ids are per bot
        if await self.seen_updates.seen(key):
            log.info("update %s was handled already; skipped", event.update_id)
            return UNHANDLED
        result = await handler(event, data)
        await self.seen_updates.mark(key)
        return result
