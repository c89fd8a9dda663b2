"""Start-up shared by ``loyalty run`` and ``loyalty demo``: settings → program → database → bot."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_dispatcher, make_bot, set_command_menus
from bot.dedupe import MemorySeenUpdates, RedisSeenUpdates, SeenUpdates
from bot.heap import freeze_startup_heap
from bot.http import Deps, make_http_app, start_http
from bot.scheduling import make_scheduler
from bot.settings import Settings
from loyalty.program import Program, load_program
from loyalty.rewards import sync_catalog
from storage.database import SessionFactory, is_sqlite, make_engine, make_session_factory
from storage.migrate import current_and_head_async, upgrade_async

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """Start-up cannot go on; the message says what to do."""


@dataclass
class App:
    settings: Settings
    program: Program
    engine: AsyncEngine
    sessions: SessionFactory
    bot: Bot
    dispatcher: Dispatcher
    redis: Any | None = None  # redis.asyncio.Redis with LOYALTY_REDIS_URL: FSM state, isolation, readiness

    async def close(self) -> None:
        await self.dispatcher["broadcaster"].stop()
        await self.bot.session.close()
        await self.dispatcher.storage.close()
        await self.dispatcher.fsm.events_isolation.close()
        await self.engine.dispose()


async def prepare_database(settings: Settings) -> None:
    """SQLite migrates itself; a shared PostgreSQL is migrated on purpose, with ``loyalty migrate``."""
    if is_sqlite(settings.database_url):
        await upgrade_async(settings.database_url)
        return
    current, head = await current_and_head_async(settings.database_url)
    if current != head:
        raise StartupError(
            f"the database is at migration {current or 'none'}, the code needs {head}: run `loyalty migrate` first"
        )


async def build_app(settings: Settings) -> App:
    program = load_program(settings.program_file)
    await prepare_database(settings)
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    sessions = make_session_factory(engine)
    async with sessions() as session:
        await sync_catalog(session, program)
    bot = make_bot(settings)
    storage, isolation = make_fsm_storage(settings)
    redis = getattr(storage, "redis", None)
    # Long polling acknowledges an update with the next getUpdates, so one process never sees it twice; only a
    # record shared in Redis (a restart between handling and acknowledging) or the webhook's redeliveries need it.
    seen: SeenUpdates | None = (
        RedisSeenUpdates(redis) if redis is not None else MemorySeenUpdates() if settings.webhook_url else None
    )
    dispatcher = build_dispatcher(
        settings, program, sessions, storage=storage, events_isolation=isolation, seen_updates=seen
    )
    return App(settings, program, engine, sessions, bot, dispatcher, redis)


def make_fsm_storage(settings: Settings) -> tuple[BaseStorage | None, BaseEventIsolation | None]:
    """Conversation state in Redis when LOYALTY_REDIS_URL is set, so any worker can take any update; else in
    memory (one process). None, None: the dispatcher's defaults."""
    if not settings.redis_url:
        return None, None
    from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage

    # with_destiny: keys carry the FSM destiny, so scenes or a second FSM could never read each other's state.
    storage = RedisStorage.from_url(settings.redis_url, key_builder=DefaultKeyBuilder(with_destiny=True))
    # Isolation: a lock per chat and user across workers, so two updates of one conversation never interleave.
    # A held lock is polled every 5 ms rather than redis-py's default 100 ms: a member's second tap would
    # otherwise wait a tenth of a second for a handler that took ten milliseconds. It expires after 10 s rather
    # than aiogram's 60: a worker killed mid-update leaves its locks behind, and its members wait that long.
    return storage, storage.create_isolation(lock_kwargs={"timeout": 10, "sleep": 0.005})


async def run_polling(app: App, *, handle_signals: bool = True, with_scheduler: bool = False) -> None:
    scheduler = make_scheduler(app) if with_scheduler else None
    me = await app.bot.get_me()
    log.info("starting %s as @%s", app.program.name, me.username)
    await set_command_menus(app.bot, app.dispatcher["i18n"], app.settings, app.sessions)
    # Long polling and a webhook exclude each other; a webhook left over from a deployment would block us.
    await app.bot.delete_webhook(drop_pending_updates=False)
    if scheduler is not None:
        scheduler.start()
    try:
        await app.dispatcher.start_polling(
            app.bot,
            allowed_updates=app.dispatcher.resolve_used_update_types(),
            handle_signals=handle_signals,
            close_bot_session=True,
        )
    finally:
        if scheduler is not None:
            await scheduler.stop()
        await app.close()


async def run_scheduler(app: App) -> None:
    """The scheduler alone: sends scheduled messages, answers no updates."""
    log.info("starting the scheduler for %s", app.program.name)
    stop = _stop_on_signals()
    try:
        await make_scheduler(app).run_until(stop)
    finally:
        await app.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def register_webhook(app: App) -> None:
    """Point Telegram at our webhook. Done by the process that runs the scheduler (role ``all`` or
    ``scheduler``), of which a deployment has exactly one; bot workers never set or delete it."""
    assert app.settings.webhook_url is not None
    await app.bot.set_webhook(
        url=app.settings.webhook_url,
        secret_token=app.settings.webhook_secret,
        allowed_updates=app.dispatcher.resolve_used_update_types(),
        drop_pending_updates=False,
    )
    log.info("webhook set to %s", app.settings.webhook_url)


async def run_role(app: App, role: str) -> None:
    """``loyalty run --role``: the HTTP server always; updates by webhook or long polling for ``all`` and
    ``bot``; the scheduler for ``all`` and ``scheduler``."""
    serve_updates, with_scheduler = role != "scheduler", role != "bot"
    deps = Deps(app.settings, app.program, app.sessions, app.bot, app.dispatcher, app.redis)
    http = await start_http(
        make_http_app(deps, serve_updates=serve_updates), app.settings.http_host, app.settings.http_port
    )
    freeze_startup_heap()
    try:
        if app.settings.webhook_url is None:
            if role == "scheduler":
                await run_scheduler(app)
            else:
                await run_polling(app, with_scheduler=with_scheduler)
            return
        await run_webhook(app, serve_updates=serve_updates, with_scheduler=with_scheduler)
    finally:
        await http.cleanup()


async def run_webhook(app: App, *, serve_updates: bool, with_scheduler: bool) -> None:
    """Updates arrive at the HTTP server; this waits for a signal. The webhook is never deleted on the way out:
    the other workers go on serving it."""
    stop = _stop_on_signals()
    scheduler = make_scheduler(app) if with_scheduler else None
    try:
        if scheduler is not None:
            await register_webhook(app)
            await set_command_menus(app.bot, app.dispatcher["i18n"], app.settings, app.sessions)
            scheduler.start()
        log.info("serving %s%s by webhook", app.program.name, " updates" if serve_updates else "")
        await stop.wait()
    finally:
        if scheduler is not None:
            await scheduler.stop()
        await app.close()
