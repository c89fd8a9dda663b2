"""Start-up shared by ``loyalty run`` and ``loyalty demo``: settings → program → database → bot."""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from collections.abc import Callable
from datetime import datetime

from aiogram.exceptions import TelegramAPIError, TelegramNetworkError, TelegramNotFound, TelegramUnauthorizedError
from aiogram.methods import SendMessage
from aiogram.types import Message, Update
from asyncpg import InvalidAuthorizationSpecificationError, InvalidCatalogNameError, InvalidPasswordError
from redis.exceptions import RedisError
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.dedupe import MemorySeenUpdates
from bot.gate import RedisGate
from bot.heap import freeze_startup_heap
from bot.services import Services, compose, set_command_menus
from bot.session import response_model
from bot.settings import Settings
from loyalty.program import EXAMPLE_PROGRAM, Program, load_program
from loyalty.revisions import ProgramRef, ensure_first_revision, same_program
from loyalty.rewards import sync_catalog
from scheduler.jobs import make_scheduler
from storage.clock import utcnow
from storage.database import is_sqlite, make_engine, make_session_factory, ping
from storage.migrate import MigrationFailed, current_and_head_in_child, upgrade_in_child
from web.server import make_http_app, start_http

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """Start-up cannot go on; the message says what to check. ``exit_code`` 2: a setting is wrong; 1: something
    the bot depends on (the database, Redis, Telegram) cannot be reached."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _where(url: str) -> str:
    """host:port/database of a URL, without its password."""
    parts = make_url(url)
    return f"{parts.host or 'localhost'}:{parts.port or 5432}/{parts.database or ''}"


def database_problem(url: str, error: BaseException) -> StartupError:
    if is_sqlite(url):
        return StartupError(
            f"cannot open the SQLite database {make_url(url).database}: {error}. Check "
            "LOYALTY_DATABASE_URL and that the folder is writable",
            2,
        )
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    if isinstance(cause, InvalidAuthorizationSpecificationError | InvalidPasswordError | InvalidCatalogNameError):
        return StartupError(f"PostgreSQL at {_where(url)} refused us: {cause}. Check LOYALTY_DATABASE_URL", 2)
    reason = "it did not answer in time" if isinstance(cause, TimeoutError) else str(cause) or type(cause).__name__
    return StartupError(
        f"cannot connect to PostgreSQL at {_where(url)} ({reason}): is it running and reachable? "
        "Check LOYALTY_DATABASE_URL"
    )


async def check_dependencies(services: Services) -> None:
    """Redis and Telegram answer, and the bot token is accepted, before any update is taken."""
    settings = services.settings
    if services.redis is not None:
        try:
            async with asyncio.timeout(settings.database_connect_timeout):
                await services.redis.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            raise StartupError(
                f"cannot reach Redis at {settings.redis_url} ({exc or 'no answer'}): is it "
                "running? Check LOYALTY_REDIS_URL"
            ) from exc
    try:
        await services.bot.get_me()
    except TelegramUnauthorizedError as exc:
        raise StartupError(
            "Telegram refused LOYALTY_BOT_TOKEN (401 Unauthorized): copy the token from @BotFather again", 2
        ) from exc
    except TelegramNotFound as exc:
        raise StartupError(
            f"the Bot API at {settings.telegram_api_url} does not know this bot (404): check "
            "LOYALTY_BOT_TOKEN and LOYALTY_TELEGRAM_API_URL",
            2,
        ) from exc
    except TelegramNetworkError as exc:
        raise StartupError(
            f"cannot reach the Bot API at {settings.telegram_api_url} ({exc.message}): check the "
            "network (or LOYALTY_TELEGRAM_API_URL)"
        ) from exc
    except TelegramAPIError as exc:
        raise StartupError(f"the Bot API at {settings.telegram_api_url} answered: {exc.message}") from exc


async def prepare_database(settings: Settings) -> None:
    """SQLite migrates itself; a shared PostgreSQL is migrated on purpose, with ``loyalty migrate``. Alembic runs in
    a child process, so that it does not stay in this one's memory (``storage.migrate``)."""
    try:
        if is_sqlite(settings.database_url):
            await upgrade_in_child(settings.database_url)
            return
        current, head = await current_and_head_in_child(settings.database_url)
    except MigrationFailed as exc:
        raise database_problem(settings.database_url, exc) from exc
    if current != head:
        raise StartupError(
            f"the database is at migration {current or 'none'}, the code needs {head}: run `loyalty migrate` first"
        )


async def program_in_force(session: AsyncSession, settings: Settings, file: Program, now: datetime) -> Program:
    """The database's revision of the program; on a fresh database the file becomes revision 1 first. A file that
    says something else is only pointed out: edits made elsewhere (the chat, an import) are never overwritten."""
    revision = await ensure_first_revision(session, file, now)
    if not same_program(file, revision.program):
        path = settings.program_file or EXAMPLE_PROGRAM
        log.warning(
            "the program file %s differs from program revision %d in the database; revision %d is in force. "
            "To use the file, run `loyalty program import %s`",
            path,
            revision.number,
            revision.number,
            path,
        )
    return revision.program


async def build_services(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> Services:
    """``clock``: what handlers, the broadcaster and the scheduler take as "now" (the demo's can be moved on)."""
    file = load_program(settings.program_file)
    engine = make_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        connect_timeout=settings.database_connect_timeout,
        statement_timeout=settings.database_statement_timeout,
    )
    sessions = make_session_factory(engine)
    try:
        await ping(sessions)  # one clear line now, rather than a traceback from Alembic
        await prepare_database(settings)
        async with sessions() as session:
            program = await program_in_force(session, settings, file, clock())
            await sync_catalog(session, program)
    except BaseException as exc:  # whatever stops the start-up leaves no connection open
        await engine.dispose()
        if isinstance(exc, OSError | TimeoutError | DBAPIError | sqlite3.Error):
            raise database_problem(settings.database_url, exc) from exc
        raise
    if settings.redis_url:
        # Conversation state, a lock per conversation and the record of handled updates in Redis, so that any
        # worker can take any update.
        gate = RedisGate.from_url(settings.redis_url)
        return compose(settings, ProgramRef(program), sessions, clock=clock, fsm=gate, redis=gate.redis, engine=engine)
    # Long polling acknowledges an update with the next getUpdates, so one process never sees it twice; a webhook's
    # redeliveries need the record.
    seen = MemorySeenUpdates() if settings.webhook_url else None
    return compose(settings, ProgramRef(program), sessions, clock=clock, seen_updates=seen, engine=engine)


async def run_polling(services: Services, *, handle_signals: bool = True, with_scheduler: bool = False) -> None:
    scheduler = make_scheduler(services) if with_scheduler else None
    me = await services.bot.get_me()
    log.info("starting %s as @%s", services.program.name, me.username)
    await set_command_menus(services)
    # Long polling and a webhook exclude each other; a webhook left over from a deployment would block us.
    await services.bot.delete_webhook(drop_pending_updates=False)
    if scheduler is not None:
        scheduler.start()
    try:
        await services.dispatcher.start_polling(
            services.bot,
            allowed_updates=services.dispatcher.resolve_used_update_types(),
            handle_signals=handle_signals,
            close_bot_session=True,
        )
    finally:
        if scheduler is not None:
            await scheduler.stop()
        await services.close()


async def run_scheduler(services: Services) -> None:
    """The scheduler alone: sends scheduled messages, answers no updates."""
    log.info("starting the scheduler for %s", services.program.name)
    stop = _stop_on_signals()
    try:
        await make_scheduler(services).run_until(stop)
    finally:
        await services.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def register_webhook(services: Services) -> None:
    """Point Telegram at our webhook. Done by the process that runs the scheduler (role ``all`` or
    ``scheduler``), of which a deployment has exactly one; bot workers never set or delete it."""
    assert services.settings.webhook_url is not None
    await services.bot.set_webhook(
        url=services.settings.webhook_url,
        secret_token=services.settings.webhook_secret,
        allowed_updates=services.dispatcher.resolve_used_update_types(),
        drop_pending_updates=False,
    )
    log.info("webhook set to %s", services.settings.webhook_url)


async def run_role(services: Services, role: str) -> None:
    """``loyalty run --role``: the HTTP server always; updates by webhook or long polling for ``all`` and
    ``bot``; the scheduler for ``all`` and ``scheduler``."""
    serve_updates, with_scheduler = role != "scheduler", role != "bot"
    settings = services.settings
    try:
        await check_dependencies(services)
        try:
            http = await start_http(
                make_http_app(services, serve_updates=serve_updates), settings.http_host, settings.http_port
            )
        except OSError as exc:
            raise StartupError(
                f"cannot serve HTTP on {settings.http_host}:{settings.http_port} ({exc.strerror}): "
                "choose another LOYALTY_HTTP_PORT or LOYALTY_HTTP_HOST",
                2,
            ) from exc
    except StartupError:
        await services.close()
        raise
    services.watch_program()  # a new revision is in force here within seconds (``bot.programs``)
    warm_models()
    freeze_startup_heap()
    try:
        if services.settings.webhook_url is None:
            if role == "scheduler":
                await run_scheduler(services)
            else:
                await run_polling(services, with_scheduler=with_scheduler)
            return
        await run_webhook(services, serve_updates=serve_updates, with_scheduler=with_scheduler)
    finally:
        await http.cleanup()


def warm_models() -> None:
    """Build the models every update takes before the start-up heap is frozen: aiogram's are built on first use
    (``bot.lazymodels``), and the first member to write should not wait for them."""
    Update.model_rebuild()
    SendMessage.model_rebuild()
    response_model(list[Update])
    response_model(Message)


async def run_webhook(services: Services, *, serve_updates: bool, with_scheduler: bool) -> None:
    """Updates arrive at the HTTP server; this waits for a signal. The webhook is never deleted on the way out:
    the other workers go on serving it."""
    stop = _stop_on_signals()
    scheduler = make_scheduler(services) if with_scheduler else None
    try:
        if scheduler is not None:
            await register_webhook(services)
            await set_command_menus(services)
            scheduler.start()
        log.info("serving %s%s by webhook", services.program.name, " updates" if serve_updates else "")
        await stop.wait()
    finally:
        if scheduler is not None:
            await scheduler.stop()
        await services.close()
