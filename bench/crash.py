"""A broadcast killed mid-send: ``kill -9`` on the sending process, a restart, and what members got.

``loyalty run --role scheduler`` sends one broadcast to every member of a fresh SQLite database at 30 messages a
second against the emulator (in this process, answering 429 beyond 30 a second, each send taking ``--latency``
seconds as Telegram's do). After ``--kill-after`` deliveries the process is killed with SIGKILL (no clean-up of
any kind), started again, and left to finish. Printed: who got the message twice (the aim: nobody), who never got
it (the aim: at most the few sends in flight at the kill), and how many rows the restart found "unknown".

Run: ``.venv/bin/python -m bench.crash [--members 900] [--kill-after 300] [--latency 0.1]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from bench.broadcast import FIRST_ID, fill
from emulator import FakeTelegram
from loyalty import broadcasts
from loyalty.program import load_program
from loyalty.segments import Segment
from storage.clock import utcnow
from storage.database import make_engine, make_session_factory
from storage.models import Broadcast, Delivery

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Double points this Friday!"


def _start(url: str, tg: FakeTelegram, workdir: Path, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env |= {
        "LOYALTY_BOT_TOKEN": tg.token,
        "LOYALTY_TELEGRAM_API_URL": tg.base_url,
        "LOYALTY_DATABASE_URL": url,
        "LOYALTY_BROADCAST_RATE": "30",
        "LOYALTY_HTTP_PORT": "0",
        "PYTHONPATH": str(ROOT),
    }
    handle = log.open("ab")
    return asyncio.create_subprocess_exec(  # type: ignore[return-value]
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        "--role",
        "scheduler",
        cwd=workdir,
        env=env,
        stdout=handle,
        stderr=handle,
    )


def _delivered(tg: FakeTelegram) -> Counter[int]:
    return Counter(
        int(c.params["chat_id"]) for c in tg.calls_of("sendMessage") if c.ok and TEXT in str(c.params.get("text"))
    )


async def _until(condition: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the run took too long")
        await asyncio.sleep(0.05)


async def main(members: int, kill_after: int, latency: float) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        url = f"sqlite+aiosqlite:///{workdir / 'crash.db'}"
        await fill(url, members)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        async with sessions() as session:
            await broadcasts.create(
                session,
                load_program(),
                created_by=1,
                content={"default": {"text": TEXT}},
                segment=Segment(),
                now=utcnow(),
            )
        async with FakeTelegram() as tg:
            for i in range(members):
                tg.user(FIRST_ID + i, first_name=f"M{i}")
            tg.rate_limit(30)
            tg.slow_sends(latency)
            log = workdir / "bot.log"
            process = await _start(url, tg, workdir, log)
            await _until(lambda: sum(_delivered(tg).values()) >= kill_after, 300)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            at_kill = sum(_delivered(tg).values())
            async with sessions() as session:
                states = dict(
                    (await session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))).all()
                )
            print(f"killed after {at_kill} deliveries; rows then: {states}")
            started = time.monotonic()
            process = await _start(url, tg, workdir, log)

            async def done() -> bool:
                async with sessions() as session:
                    status = (await session.execute(select(Broadcast.status))).scalar_one()
                return bool(status == broadcasts.Status.DONE)

            finished = False
            while not finished and time.monotonic() - started < 300:
                await asyncio.sleep(0.5)
                finished = await done()
            process.send_signal(signal.SIGTERM)
            await process.wait()
            got = _delivered(tg)
            async with sessions() as session:
                unknown = (
                    await session.execute(select(func.count()).where(Delivery.status == broadcasts.Outcome.UNKNOWN))
                ).scalar_one()
        await engine.dispose()
        twice = sum(1 for n in got.values() if n > 1)
        never = members - len(got)
        print(
            f"members {members}: delivered to {len(got)}, twice to {twice}, never to {never}; "
            f"unknown after the restart {unknown}; finished {finished} in {time.monotonic() - started:.0f} s "
            "after the restart"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=900)
    parser.add_argument("--kill-after", type=int, default=300)
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(main(args.members, args.kill_after, args.latency))
