"""Updates per second for /balance through the full stack, next to a bare aiogram handler that only replies.

Both run the real dispatcher and aiogram Bot over HTTP against the local fake Bot API in the same process,
so the fake server's cost is paid by both; the ratio is what the loyalty stack (middlewares, database,
i18n, rendering, a reply of several lines) costs. The bare handler is aiogram out of the box: a Router, a
handler and ``Bot(token)`` with aiogram's own session. A second bare row runs it on our Bot (JSON requests,
request metrics, HTML defaults), so that what our session costs or saves is not hidden in the ratio.
Every stack is timed as ``loyalty run`` runs a worker: warmed up at the run's concurrency, its start-up heap
frozen out of the garbage collector's walks (each is unfrozen again before the next, so all start alike).
The stacks run in interleaved rounds; each round's ratio compares runs seconds apart, and the median over the
rounds is the figure.
Run: ``.venv/bin/python bench/updates.py [--updates 2000] [--concurrency 32] [--rounds 5]``.
PostgreSQL is measured when it answers at --pg (a database ``loyalty_bench`` is created and reset there).
"""

from __future__ import annotations

# bot first, as in `loyalty run`: its __init__ imports aiogram with the models built on first use (bot.lazymodels)
from bot.heap import freeze_startup_heap

# isort: split
import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message

from bot.services import compose, make_bot
from bot.settings import Settings
from emulator import FakeTelegram
from loyalty.members import join
from loyalty.program import load_program
from storage.clock import utcnow
from storage.database import make_engine, make_session_factory
from storage.migrate import upgrade_async

MEMBERS = 200
COMMAND = "/balance"
WARM_UP = 400


async def measure(tg: FakeTelegram, bot: Bot, dp: Dispatcher, updates: int, concurrency: int) -> float:
    users = [tg.user(10_000 + i, f"M{i}") for i in range(MEMBERS)]
    batch = [tg.message_update(users[i % MEMBERS], COMMAND) for i in range(updates)]
    semaphore = asyncio.Semaphore(concurrency)

    async def one(update: dict[str, Any]) -> None:
        async with semaphore:
            await dp.feed_raw_update(bot, update)

    # Warm-up at the timed run's concurrency, so that it opens the connections the run will use (to the Bot API,
    # PostgreSQL's readers) and fills statement caches, catalogs and pydantic models: a worker that has run for a
    # while has them all, and opening one costs milliseconds.
    await asyncio.gather(*(one(tg.message_update(users[i % MEMBERS], COMMAND)) for i in range(WARM_UP)))
    freeze_startup_heap()  # every stack as `loyalty run` runs a worker
    try:
        started = time.perf_counter()
        await asyncio.gather(*(one(update) for update in batch))
        elapsed = time.perf_counter() - started
    finally:
        gc.unfreeze()  # the next stack starts from the same state
    tg.assert_clean()
    return updates / elapsed


def bare_dispatcher() -> Dispatcher:
    router = Router()

    @router.message()
    async def reply(message: Message) -> None:
        await message.answer("ok")

    dp = Dispatcher()
    dp.include_router(router)
    return dp


async def full_stack_rate(url: str, updates: int, concurrency: int) -> float:
    await upgrade_async(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    program = load_program()
    async with sessions() as session:
        for i in range(MEMBERS):
            await join(
                session,
                program,
                telegram_id=10_000 + i,
                chat_id=10_000 + i,
                first_name=f"M{i}",
                last_name=None,
                username=None,
                language_code="en",
                payload=None,
                now=utcnow(),
            )
    async with FakeTelegram() as tg:
        settings = Settings(bot_token=tg.token, telegram_api_url=tg.base_url, _env_file=None)  # type: ignore[call-arg]
        services = compose(settings, program, sessions)
        bot, dp = services.bot, services.dispatcher
        try:
            return await measure(tg, bot, dp, updates, concurrency)
        finally:
            await bot.session.close()
            await engine.dispose()


async def bare_rate(updates: int, concurrency: int, *, ours: bool = False) -> float:
    async with FakeTelegram() as tg:
        settings = Settings(bot_token=tg.token, telegram_api_url=tg.base_url, _env_file=None)  # type: ignore[call-arg]
        bot = (
            make_bot(settings)
            if ours
            else Bot(token=tg.token, session=AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url)))
        )
        try:
            return await measure(tg, bot, bare_dispatcher(), updates, concurrency)
        finally:
            await bot.session.close()


async def fresh_pg_database(server: str, name: str = "loyalty_bench") -> str | None:
    try:
        conn = await asyncpg.connect(f"postgresql://{server}/postgres", timeout=3)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return f"postgresql+asyncpg://{server}/{name}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="user@host:port of PostgreSQL")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each stack, interleaved")
    args = parser.parse_args()

    # Shared machines drift by tens of percent between runs; interleaving the stacks compares them under the
    # same conditions.
    rates: dict[str, list[float]] = {}
    pg_available = True
    for _ in range(args.rounds):
        rates.setdefault("bare aiogram handler", []).append(await bare_rate(args.updates, args.concurrency))
        rates.setdefault("bare, on our Bot", []).append(await bare_rate(args.updates, args.concurrency, ours=True))
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            rates.setdefault("/balance, SQLite", []).append(await full_stack_rate(url, args.updates, args.concurrency))
        pg_url = await fresh_pg_database(args.pg) if pg_available else None
        if pg_url:
            rates.setdefault("/balance, PostgreSQL", []).append(
                await full_stack_rate(pg_url, args.updates, args.concurrency)
            )
        elif pg_available:
            pg_available = False
            print(f"(PostgreSQL at {args.pg} did not answer; skipped)")

    # Each round's ratio compares stacks run seconds apart; the median of those is the figure, since one lucky
    # round of the bare handler would otherwise set the bar for every round of the others.
    bare = rates["bare aiogram handler"]
    print(f"{args.updates} updates, concurrency {args.concurrency}, {args.rounds} interleaved rounds")
    print(f"{'stack':<24}{'updates/s':>12}{'vs bare':>10}   each round: updates/s (vs bare that round)")
    for name, runs in rates.items():
        ratios = [run / bare_run for run, bare_run in zip(runs, bare, strict=False)]
        each = ", ".join(f"{run:.0f} ({ratio:.2f})" for run, ratio in zip(runs, ratios, strict=False))
        print(f"{name:<24}{statistics.median(runs):>12.0f}{statistics.median(ratios):>10.2f}   {each}")
    print("updates/s and vs bare: medians over the rounds")


if __name__ == "__main__":
    asyncio.run(main())
