"""Prometheus metrics: what the bot handles, sends and runs; served at ``/metrics`` by ``bot.http``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update
from prometheus_client import Counter, Gauge, Histogram

from loyalty.broadcasts import queued
from storage.database import SessionFactory

UPDATES = Counter("loyalty_updates_total", "Telegram updates handled, by type", ["type"])
UPDATE_SECONDS = Histogram("loyalty_update_seconds", "Time to handle one Telegram update")
HANDLER_ERRORS = Counter("loyalty_handler_errors_total", "Updates whose handler raised an exception", ["type"])
MESSAGES_SENT = Counter("loyalty_messages_sent_total", "Messages sent to Telegram (send*, copy, forward)", ["method"])
RATE_LIMITED = Counter("loyalty_telegram_429_total", "Bot API requests answered 429 Too Many Requests", ["method"])
BROADCAST_QUEUE = Gauge("loyalty_broadcast_queue_depth", "Broadcast deliveries waiting to be sent")
JOB_RUNS = Counter("loyalty_job_runs_total", "Scheduled job runs, by job and outcome", ["job", "outcome"])
API_REQUESTS = Counter(
    "loyalty_api_requests_total", "Purchases API requests, by operation and status", ["operation", "status"]
)

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


def counted_job(name: str, run: Callable[[datetime], Awaitable[int]]) -> Callable[[datetime], Awaitable[int]]:
    """A scheduled job that counts its runs; the scheduler still logs and survives a failure."""

    async def wrapped(now: datetime) -> int:
        try:
            done = await run(now)
        except Exception:
            JOB_RUNS.labels(name, "error").inc()
            raise
        JOB_RUNS.labels(name, "ok").inc()
        return done

    return wrapped


async def refresh_broadcast_queue(sessions: SessionFactory) -> None:
    """The queue depth is read at scrape time, so the gauge is never stale."""
    async with sessions() as session:
        BROADCAST_QUEUE.set(await queued(session))
