"""Load through the webhook: two bot workers on PostgreSQL and Redis, one killed half-way.

Starts a fake Bot API (in this process), migrates a fresh PostgreSQL database ``loyalty_load_bench``, and runs
two ``loyalty run --role bot`` workers in webhook mode on the same database and Redis. 200 simulated members
join, then send /balance, /card and /history while twenty tills record purchases for them, at ``--rate`` updates a
second spread over both workers (as a load balancer would), for ``--seconds``. Half-way the second worker is
killed (SIGKILL). Updates it refused or never answered are delivered again to the survivor, as Telegram
redelivers an unacknowledged webhook update. A worker answers the webhook only once the update is handled, so an
acknowledged update was handled. At the end: every update acknowledged, every purchase recorded once, one
welcome bonus per member, and every balance equal to its ledger's sum.
Printed: updates a second, p50 / p99 latency of the webhook answer (the update handled), redeliveries, and what
was lost or doubled. Aim: p99 under 100 ms at 200 updates a second.
Run: ``.venv/bin/python -m bench.load [--rate 200] [--seconds 30]`` (needs PostgreSQL and Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from bench.updates import fresh_pg_database
from bot.heap import freeze_startup_heap
from emulator import FakeTelegram
from storage.migrate import upgrade_async

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "loyalty_load_bench"
REDIS_URL = "redis://127.0.0.1:6379/5"
SECRET = "load-bench-secret"
CASHIERS = range(9100, 9120)  # twenty tills: one chat's updates are handled in order, like a real till's
MEMBERS = 200
FIRST = 700_000
COMMANDS = ("/balance", "/card", "/history")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _database(server: str) -> str:
    url = await fresh_pg_database(server, DATABASE)
    if url is None:
        raise SystemExit(f"no PostgreSQL answers at {server}")
    await upgrade_async(url)
    return url


async def _worker(tg: FakeTelegram, database: str, port: int, redis: bool = True) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_BOT_TOKEN=tg.token,
        LOYALTY_TELEGRAM_API_URL=tg.base_url,
        LOYALTY_DATABASE_URL=database,
        LOYALTY_REDIS_URL=REDIS_URL,
        LOYALTY_WEBHOOK_URL="https://bot.example.com/tg/webhook",
        LOYALTY_WEBHOOK_SECRET=SECRET,
        LOYALTY_HTTP_HOST="127.0.0.1",
        LOYALTY_HTTP_PORT=str(port),
        LOYALTY_CASHIER_IDS=",".join(map(str, CASHIERS)),
        PYTHONPATH=str(ROOT),
    )
    if not redis:
        del env["LOYALTY_REDIS_URL"]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        "--role",
        "bot",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _ready(http: aiohttp.ClientSession, port: int) -> None:
    async with asyncio.timeout(60):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


class Delivery:
    """Telegram's side of the webhook: POST an update to a worker; keep what was not acknowledged."""

    def __init__(self, http: aiohttp.ClientSession, ports: list[int]) -> None:
        self.http, self.ports = http, ports
        self.alive = list(ports)
        self.latencies: list[float] = []
        self.phase = "both workers"
        self.timeline: list[tuple[float, float]] = []
        self.by_phase: dict[str, list[float]] = {}
        self.unacknowledged: list[dict[str, Any]] = []
        self.redelivered = 0

    async def post(self, update: dict[str, Any], port: int) -> bool:
        started = time.perf_counter()
        try:
            async with self.http.post(
                f"http://127.0.0.1:{port}/tg/webhook",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self.timeline.append((started, time.perf_counter() - started))
            self.latencies.append(time.perf_counter() - started)
            self.by_phase.setdefault(self.phase, []).append(time.perf_counter() - started)
        else:
            self.unacknowledged.append(update)
        return ok

    async def redeliver(self) -> None:
        """Like Telegram: deliver again what was not acknowledged, a few rounds, until it is."""
        for _round in range(5):
            pending, self.unacknowledged = self.unacknowledged, []
            if not pending:
                return
            self.redelivered += len(pending)
            for update in pending:
                await self.post(update, self.alive[0])


async def run(rate: float, seconds: float, pg: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    database = await _database(pg)
    async with FakeTelegram() as tg, aiohttp.ClientSession() as http:
        ports = [_free_port(), _free_port()]
        workers = [await _worker(tg, database, port) for port in ports]
        try:
            for port in ports:
                await _ready(http, port)
            delivery = Delivery(http, ports)
            members = [tg.user(FIRST + i, f"M{i}") for i in range(MEMBERS)]
            tills = [tg.user(tid, "Cashier") for tid in CASHIERS]
            await asyncio.gather(
                *(delivery.post(tg.message_update(m, "/start"), ports[i % 2]) for i, m in enumerate(members))
            )
            # Warm-up, not measured: every command once on both workers (connection pools, caches, first use),
            # and a purchase from every till on each (the first writes prepare their statements).
            for command in COMMANDS:
                await asyncio.gather(
                    *(delivery.post(tg.message_update(m, command), ports[i % 2]) for i, m in enumerate(members))
                )
            purchases: dict[int, int] = {}
            for t, till in enumerate(tills):
                for port in ports:
                    member = members[(t * 2 + port) % MEMBERS]
                    await delivery.post(
                        tg.message_update(till, f"/purchase {member['id']} 10 coffee W-{t}-{port}"), port
                    )
                    purchases[member["id"]] = purchases.get(member["id"], 0) + 1
            delivery.latencies.clear()
            delivery.timeline.clear()
            delivery.by_phase.clear()

            updates: list[dict[str, Any]] = []
            total = int(rate * seconds)
            for n in range(total):
                member = members[n % MEMBERS]
                if n % 10 == 0:  # one update in ten is a purchase at the till
                    till = tills[(n // 10) % len(tills)]
                    updates.append(tg.message_update(till, f"/purchase {member['id']} 10 coffee L-{n}"))
                    purchases[member["id"]] = purchases.get(member["id"], 0) + 1
                else:
                    updates.append(tg.message_update(member, COMMANDS[n % len(COMMANDS)]))
            # This process plays Telegram for both workers. Its heap (the emulator's record of every call, the
            # updates to send) grows through the run, and a full collection of it stalled every worker's replies
            # for a quarter of a second: Telegram's own pauses, not the workers'. Frozen, it is never walked.
            freeze_startup_heap()
            tasks = []
            started = time.perf_counter()
            for n, update in enumerate(updates):
                if n == total // 2:
                    workers[1].send_signal(signal.SIGKILL)  # a worker dies with updates in flight
                    delivery.alive = [ports[0]]
                    delivery.phase = "one worker"
                await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
                port = ports[n % 2]
                tasks.append(asyncio.create_task(delivery.post(update, port)))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
            delivery.phase = "redelivery"
            await delivery.redeliver()

            lost, doubled = await _check(database, updates, purchases)
            lost += len(delivery.unacknowledged)  # not handled even when delivered again
            latencies = sorted(delivery.latencies)
            p50 = statistics.median(latencies) * 1000
            p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
            print(
                f"{total} updates in {elapsed:.1f} s: {total / elapsed:.0f} updates/s offered, "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (acknowledged deliveries); a worker killed at update "
                f"{total // 2}, {delivery.redelivered} redelivered to the survivor; lost {lost}, doubled {doubled}; "
                f"Bot API spec errors {len(tg.spec_errors)}"
            )
            for phase, values in delivery.by_phase.items():
                values.sort()
                print(
                    f"  {phase}: {len(values)} updates, p50 {statistics.median(values) * 1000:.1f} ms, "
                    f"p99 {values[int(len(values) * 0.99) - 1] * 1000:.1f} ms, max {values[-1] * 1000:.0f} ms"
                )
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.send_signal(signal.SIGTERM)
            await asyncio.gather(*(w.wait() for w in workers))
            await redis.flushdb()
            await redis.aclose()


async def _check(database: str, updates: list[dict[str, Any]], purchases: dict[int, int]) -> tuple[int, int]:
    """Lost: purchases never recorded. Doubled: a purchase or welcome bonus recorded twice, or a balance that
    is not its ledger's sum."""
    connection = await asyncpg.connect(database.replace("postgresql+asyncpg", "postgresql"))
    try:
        recorded = {
            row["external_id"]: row["n"]
            for row in await connection.fetch("SELECT external_id, count(*) AS n FROM purchase GROUP BY external_id")
        }
        by_member = {
            row["telegram_id"]: row["n"]
            for row in await connection.fetch(
                "SELECT m.telegram_id, count(p.id) AS n FROM member m JOIN purchase p ON p.member_id = m.id "
                "GROUP BY m.telegram_id"
            )
        }
        welcomes = await connection.fetchval(
            "SELECT count(*) FROM (SELECT member_id FROM ledger_entry WHERE kind = 'welcome' "
            "GROUP BY member_id HAVING count(*) > 1) twice"
        )
        off = await connection.fetchval(
            "SELECT count(*) FROM member m WHERE m.points <> "
            "(SELECT coalesce(sum(points), 0) FROM ledger_entry e WHERE e.member_id = m.id)"
        )
    finally:
        await connection.close()
    sent = {u["message"]["text"].split()[-1] for u in updates if u["message"]["text"].startswith("/purchase")}
    lost = len(sent - set(recorded)) + sum(max(0, n - by_member.get(tid, 0)) for tid, n in purchases.items())
    doubled = sum(n - 1 for n in recorded.values() if n > 1) + int(welcomes) + int(off)
    doubled += sum(max(0, by_member.get(tid, 0) - n) for tid, n in purchases.items())
    return lost, doubled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    args = parser.parse_args()
    asyncio.run(run(args.rate, args.seconds, args.pg))


if __name__ == "__main__":
    main()
