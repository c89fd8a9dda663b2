"""Broadcast throughput against a fake Bot API that enforces Telegram's flood limit.

The fake Bot API runs in its own process (so it does not share a core with the sender) and answers 429 to any
send beyond ``limit`` in a sliding second. The bot's real Broadcaster sends one broadcast to every member of a
fresh database. Printed per case: the configured rate, the rate achieved (messages delivered / wall time of the
whole run, claims and bookkeeping included), 429s received, duplicates and members skipped.
The aim: at least 97% of the configured rate, no duplicates, nobody skipped.

Run: ``.venv/bin/python -m bench.broadcast [--members 10000] [--case free|paid|all] [--pg 127.0.0.1:5432]``
(free: Telegram's 30 a second against the default 25; paid: 1,000 a second with ``allow_paid_broadcast``).
PostgreSQL is used when it answers at --pg; else SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from sqlalchemy import insert

from bench.updates import fresh_pg_database
from bot.services import compose, make_bot
from bot.settings import Settings
from emulator import FakeTelegram
from loyalty import broadcasts
from loyalty.program import load_program
from loyalty.segments import Segment
from notifications.broadcasting import Broadcaster
from storage.clock import utcnow
from storage.database import begin_write, make_engine, make_session_factory
from storage.migrate import upgrade_async
from storage.models import Member

FIRST_ID = 100_000


@dataclass(frozen=True)
class Case:
    name: str
    limit: float  # what the fake Bot API allows a second
    rate: float  # what the bot is configured to send
    paid: bool


CASES = {
    "free": [Case("free, default rate", 30, 25, False), Case("free, rate at the limit", 30, 30, False)],
    "paid": [Case("paid, 5% under the limit", 1000, 950, True), Case("paid, rate at the limit", 1000, 1000, True)],
    "capacity": [Case("no limit anywhere", 1_000_000, 1000, True)],
}


def serve(limit: float, members: int, pipe: Connection) -> None:
    """The fake Bot API's process: serve until told to stop, then report what it delivered."""

    async def main() -> None:
        tg = FakeTelegram()
        for i in range(members):
            tg.user(FIRST_ID + i, first_name=f"M{i}")
        tg.rate_limit(limit)
        times: list[float] = []
        tg.listeners.append(lambda c: times.append(time.time()) if c.method == "sendMessage" and c.ok else None)
        pipe.send(await tg.start())
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        sends = tg.calls_of("sendMessage")
        delivered = Counter(int(c.params["chat_id"]) for c in sends if c.ok)
        refused = sum(1 for c in sends if c.response.get("error_code") == 429)
        pipe.send((dict(delivered), refused, len(tg.spec_errors), min(times, default=0), max(times, default=0)))
        await tg.stop()

    asyncio.run(main())


async def fill(url: str, members: int) -> None:
    await upgrade_async(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    now = utcnow()
    async with sessions() as session:
        await begin_write(session)
        for start in range(0, members, 5000):
            await session.execute(
                insert(Member),
                [
                    {
                        "telegram_id": FIRST_ID + i,
                        "chat_id": FIRST_ID + i,
                        "code": f"B{i:07d}",
                        "first_name": f"M{i}",
                        "language": ("en", "zh-Hans", "zh-Hant")[i % 3],
                        "joined_at": now,
                        "last_seen_at": now,
                    }
                    for i in range(start, min(members, start + 5000))
                ],
            )
        await session.commit()
    await engine.dispose()


async def run_case(case: Case, url: str, members: int) -> None:
    await fill(url, members)
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(case.limit, members, child))
    server.start()
    api_url = parent.recv()
    settings = Settings(
        bot_token=FakeTelegram().token,
        telegram_api_url=api_url,
        broadcast_rate=case.rate,
        paid_broadcasts=case.paid,
        _env_file=None,
    )  # type: ignore[call-arg]
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    program = load_program()
    bot = make_bot(settings)
    broadcaster: Broadcaster = compose(settings, program, sessions, bot).broadcaster
    content = {
        "default": {"text": "<b>Double points</b> this Friday!"},
        "zh-Hans": {"text": "<b>双倍积分</b>，本周五！"},
    }
    async with sessions() as session:
        await broadcasts.create(session, program, created_by=1, content=content, segment=Segment(), now=utcnow())
    started, wall = time.perf_counter(), time.time()
    sent = await broadcaster.run_pending(bot)
    elapsed = time.perf_counter() - started
    await bot.session.close()
    await engine.dispose()
    parent.send("stop")
    delivered, refused, spec_errors, first, last = parent.recv()
    server.join()
    rate = sent / elapsed
    duplicates = sum(count - 1 for count in delivered.values() if count > 1)
    skipped = members - len(delivered)
    print(
        f"{case.name:<24} limit {case.limit:>6.0f}/s  configured {case.rate:>6.0f}/s  achieved {rate:>7.1f}/s "
        f"({rate / case.rate:.1%})  sent {sent}  429s {refused}  duplicates {duplicates}  skipped {skipped}  "
        f"spec errors {spec_errors}  ({elapsed:.1f} s; first message after {first - wall:.2f} s, "
        f"{(sent - 1) / (last - first):.1f}/s between the first and the last)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432", help="PostgreSQL; SQLite if it does not answer")
    args = parser.parse_args()
    chosen = [name for name in CASES if args.case == name or (args.case == "all" and name != "capacity")]
    cases = [case for name in chosen for case in CASES[name]]
    for case in cases:
        url = await fresh_pg_database(args.pg, "loyalty_broadcast_bench")
        with tempfile.TemporaryDirectory() as tmp:
            database = url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            await run_case(case, database, args.members)
        print(f"  on {'PostgreSQL' if url else 'SQLite'}")


if __name__ == "__main__":
    asyncio.run(main())
