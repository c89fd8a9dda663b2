"""Start-up shared by ``loyalty run`` and ``loyalty demo``: settings → program → database → bot."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from aiogram import Bot, Dispatcher
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_dispatcher, make_bot, set_command_menus
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


async def prepare_database(settings: Settings) -> None:
    """SQLite migrates itself; a shared PostgreSQL is migrated on purpose, with ``loyalty migrate``."""
    if is_sqlite(settings.database_url):
        await upgrade_async(settings.database_url)
        return
    current, head = await current_and_head_async(settings.database_url)
    if current != head:
        raise StartupError(f"the database is at migration {current or 'none'}, the code needs {head}: "
                           "run `loyalty migrate` first")


async def build_app(settings: Settings) -> App:
    program = load_program(settings.program_file)
    await prepare_database(settings)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    async with sessions() as session:
        await sync_catalog(session, program)
    bot = make_bot(settings)
    dispatcher = build_dispatcher(settings, program, sessions)
    return App(settings, program, engine, sessions, bot, dispatcher)


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
            app.bot, allowed_updates=app.dispatcher.resolve_used_update_types(), handle_signals=handle_signals,
            close_bot_session=True,
        )
    finally:
        if scheduler is not None:
            await scheduler.stop()
        await app.dispatcher["broadcaster"].stop()
        await app.engine.dispose()


async def run_scheduler(app: App) -> None:
    """The scheduler alone: sends scheduled messages, answers no updates."""
    log.info("starting the scheduler for %s", app.program.name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await make_scheduler(app).run_until(stop)
    finally:
        await app.dispatcher["broadcaster"].stop()
        await app.bot.session.close()
        await app.engine.dispose()
