"""Prometheus metrics of the chat side: updates handled, messages sent, 429s. Served with every other metric at
``/metrics`` (``web.server``); the API and the scheduler count in their own modules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update
from prometheus_client import Counter, Histogram

UPDATES = Counter("loyalty_updates_total", "Telegram updates handled, by type", ["type"])
UPDATE_SECONDS = Histogram("loyalty_update_seconds", "Time to handle one Telegram update")
HANDLER_ERRORS = Counter("loyalty_handler_errors_total", "Updates whose handler raised an exception", ["type"])
MESSAGES_SENT = Counter("loyalty_messages_sent_total", "Messages sent to Telegram (send*, copy, forward)", ["method"])
RATE_LIMITED = Counter("loyalty_telegram_429_total", "Bot API requests answered 429 Too Many Requests", ["method"])

_SENDS = ("send", "copy", "forward")


class UpdateMetrics(BaseMiddleware):
    """Outer middleware on updates: counts each by type, times it, counts the ones whose handler raised."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        kind = event.event_type if isinstance(event, Update) else type(event).__name__.lower()
        UPDATES.labels(kind).inc()
        with UPDATE_SECONDS.time():
            try:
                return await handler(event, data)
            except Exception:
                HANDLER_ERRORS.labels(kind).inc()
                raise


class RequestMetrics(BaseRequestMiddleware):
    """Bot session middleware: counts messages sent and 429s, whoever made the request."""

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        name = type(method).__name__
        try:
            response = await make_request(bot, method)
        except TelegramRetryAfter:
            RATE_LIMITED.labels(name).inc()
            raise
        if name.lower().startswith(_SENDS):
            MESSAGES_SENT.labels(name).inc()
        return response


def instrument_bot(bot: Bot) -> Bot:
    bot.session.middleware(RequestMetrics())
    return bot
