"""Load through the webhook: two bot workers on PostgreSQL and Redis, as production runs them.

Starts a fake Bot API (in this process), migrates a fresh PostgreSQL database ``loyalty_load_bench``, and runs
two ``loyalty run --role bot`` workers in webhook mode on the same database and Redis. 200 simulated members
join, then send /balance, /card and /history while twenty tills record purchases for them (one update in ten), at
``--rate`` updates a second spread over both workers (as a load balancer would), for ``--seconds``.
This process plays Telegram: a delivery the worker did not acknowledge (an error status, or no answer in
``ANSWER_TIMEOUT``) is delivered again after a pause that doubles each time, to a worker that is alive, until it
is acknowledged. A worker answers 200 only once the update is handled, so an acknowledged update was handled.
``--kill`` kills the second worker (SIGKILL) half-way, with updates in flight.
Printed for each of ``--runs`` runs: p50 / p99 / max of the acknowledged deliveries, the slowest answer of any
kind (a refusal included), refusals and redeliveries, the workers' CPU per update (and PostgreSQL's and Redis's),
and what was lost or doubled: every purchase recorded once, one welcome bonus per member, every balance equal
to its ledger's sum. ``--profile DIR`` samples the workers with py-spy during the measured phase and prints
where their CPU went (``bench.profile``).
Aims: p99 under 100 ms at 200 updates a second in three runs; at 300, no answer later than 2 s and nothing lost.
Run: ``.venv/bin/python -m bench.load [--rate 200] [--seconds 30] [--runs 3] [--only /balance] [--kill]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from bench.profile import print_profile
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
KINDS = (*COMMANDS, "/purchase")
# Telegram waits for a webhook's answer for a while, then counts the delivery failed and tries again later.
ANSWER_TIMEOUT = 10.0
FIRST_RETRY = 0.5
TICK = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pids_named(*names: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm in names:
                found.append(int(entry.name))
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone: a PostgreSQL backend that closed
            total += cpu_seconds(pid)
    return total


async def _database(server: str) -> str:
    url = await fresh_pg_database(server, DATABASE)
    if url is None:
        raise SystemExit(f"no PostgreSQL answers at {server}")
    await upgrade_async(url)
    return url


@dataclass
class Worker:
    port: int
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


async def _worker(tg: FakeTelegram, database: str, logs: Path, extra: dict[str, str], bare: bool = False) -> Worker:
    port = _free_port()
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
    env.update(extra)
    log = logs / f"worker-{port}.log"
    with log.open("w") as stderr:
        command = ("-m", "bench.bare_webhook") if bare else ("-m", "bot.cli", "run", "--role", "bot")
        process = await asyncio.create_subprocess_exec(sys.executable, *command, env=env, stdout=stderr, stderr=stderr)
    return Worker(port, process, log)


async def _ready(http: aiohttp.ClientSession, worker: Worker) -> None:
    try:
        async with asyncio.timeout(120):
            while worker.process.returncode is None:
                try:
                    async with http.get(f"http://127.0.0.1:{worker.port}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
    except TimeoutError:
        pass
    raise SystemExit(f"a worker did not get ready; its log:\n{worker.log.read_text()[-3000:]}")


@dataclass
class Delivery:
    """Telegram's side of the webhook: POST an update to a worker; deliver again what was not acknowledged."""

    http: aiohttp.ClientSession
    alive: list[int]
    acknowledged: list[float] = field(default_factory=list)  # seconds from POST to its 200
    answers: list[float] = field(default_factory=list)  # seconds from POST to any answer, or to giving up
    handled: list[float] = field(default_factory=list)  # seconds from the first POST of an update to its 200
    refused: int = 0
    redelivered: int = 0
    given_up: list[dict[str, Any]] = field(default_factory=list)
    retries: set[asyncio.Task[None]] = field(default_factory=set)

    async def post(self, update: dict[str, Any], port: int) -> bool:
        started = time.perf_counter()
        try:
            async with self.http.post(
                f"http://127.0.0.1:{port}/tg/webhook",
                json=update,
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                timeout=aiohttp.ClientTimeout(total=ANSWER_TIMEOUT),
            ) as response:
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        took = time.perf_counter() - started
        self.answers.append(took)
        if ok:
            self.acknowledged.append(took)
        else:
            self.refused += 1
        return ok

    async def deliver(self, update: dict[str, Any], port: int, attempts: int = 8) -> None:
        first = time.perf_counter()
        pause = FIRST_RETRY
        for attempt in range(attempts):
            if attempt:
                self.redelivered += 1
                await asyncio.sleep(pause * random.uniform(0.8, 1.2))
                pause *= 2
                port = random.choice(self.alive) if port not in self.alive else port
            if await self.post(update, port):
                self.handled.append(time.perf_counter() - first)
                return
        self.given_up.append(update)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * share) - 1)] * 1000


@dataclass
class Result:
    p50: float
    p99: float
    max: float
    slowest_answer: float
    refused: int
    redelivered: int
    lost: int
    doubled: int
    cpu_per_update: float
    database_cpu: float
    redis_cpu: float
    own_cpu: float
    spec_errors: int


def mix(tg: FakeTelegram, members: list[dict[str, Any]], tills: list[dict[str, Any]], total: int, only: str | None):
    """The updates to send and the purchases among them (member id → count)."""
    updates: list[dict[str, Any]] = []
    purchases: dict[int, int] = {}
    for n in range(total):
        member = members[n % MEMBERS]
        kind = only or ("/purchase" if n % 10 == 0 else COMMANDS[n % len(COMMANDS)])
        if kind == "/purchase":
            till = tills[n % len(tills)]
            updates.append(tg.message_update(till, f"/purchase {member['id']} 10 coffee L-{n}"))
            purchases[member["id"]] = purchases.get(member["id"], 0) + 1
        else:
            updates.append(tg.message_update(member, kind))
    return updates, purchases


async def run(args: argparse.Namespace, logs: Path, number: int) -> Result:
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    database = await _database(args.pg)
    extra = dict(item.split("=", 1) for item in args.env)
    async with FakeTelegram() as tg, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        workers = [await _worker(tg, database, logs, extra, args.bare) for _ in range(2)]
        ports = [w.port for w in workers]
        try:
            for worker in workers:
                await _ready(http, worker)
            delivery = Delivery(http, list(ports))
            members = [tg.user(FIRST + i, f"M{i}") for i in range(MEMBERS)]
            tills = [tg.user(tid, "Cashier") for tid in CASHIERS]
            await asyncio.gather(
                *(delivery.deliver(tg.message_update(m, "/start"), ports[i % 2]) for i, m in enumerate(members))
            )
            # Warm-up, not measured: every command once on both workers (connection pools, caches, first use),
            # and a purchase from every till on each (the first writes prepare their statements).
            for command in COMMANDS:
                await asyncio.gather(
                    *(delivery.deliver(tg.message_update(m, command), ports[i % 2]) for i, m in enumerate(members))
                )
            purchases: dict[int, int] = {}
            for t, till in enumerate(tills):
                for p, port in enumerate(ports):
                    member = members[(t * 2 + p) % MEMBERS]
                    await delivery.deliver(
                        tg.message_update(till, f"/purchase {member['id']} 10 coffee W-{t}-{p}"), port
                    )
                    purchases[member["id"]] = purchases.get(member["id"], 0) + 1
            delivery = Delivery(http, list(ports))

            total = int(args.rate * args.seconds)
            updates, measured = mix(tg, members, tills, total, args.only)
            for tid, n in measured.items():
                purchases[tid] = purchases.get(tid, 0) + n
            # This process plays Telegram for both workers. Its heap (the emulator's record of every call, the
            # updates to send) grows through the run, and a full collection of it stalled every worker's replies
            # for a quarter of a second: Telegram's own pauses, not the workers'. Frozen, it is never walked.
            freeze_startup_heap()
            profilers = await _start_profilers(workers, logs, number) if args.profile else []
            database_pids, redis_pids = pids_named("postgres"), pids_named("redis-server")
            cpu_before = [cpu_seconds(w.pid) for w in workers]
            database_before, redis_before = cpu_of(database_pids), cpu_of(redis_pids)
            own_before = cpu_seconds(os.getpid())
            cpu_after = list(cpu_before)
            tasks = []
            started = time.perf_counter()
            for n, update in enumerate(updates):
                if args.kill and n == total // 2:
                    cpu_after[1] = cpu_seconds(workers[1].pid)
                    workers[1].process.send_signal(signal.SIGKILL)  # a worker dies with updates in flight
                    delivery.alive = [ports[0]]
                await asyncio.sleep(max(0.0, started + n / args.rate - time.perf_counter()))
                tasks.append(asyncio.create_task(delivery.deliver(update, ports[n % 2])))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
            for i, worker in enumerate(workers):
                if worker.process.returncode is None:
                    cpu_after[i] = cpu_seconds(worker.pid)
            database_cpu = cpu_of(database_pids) - database_before
            redis_cpu = cpu_of(redis_pids) - redis_before
            own_cpu = cpu_seconds(os.getpid()) - own_before
            await _stop_profilers(profilers)

            # A bare worker records nothing: only what was never acknowledged is lost.
            lost, doubled = (0, 0) if args.bare else await _check(database, updates, purchases)
            lost += len(delivery.given_up)  # not handled however often it was delivered
            cpu = sum(cpu_after) - sum(cpu_before)
            result = Result(
                p50=percentile(delivery.acknowledged, 0.5),
                p99=percentile(delivery.acknowledged, 0.99),
                max=max(delivery.acknowledged) * 1000,
                slowest_answer=max(delivery.answers) * 1000,
                refused=delivery.refused,
                redelivered=delivery.redelivered,
                lost=lost,
                doubled=doubled,
                cpu_per_update=cpu / total * 1000,
                database_cpu=database_cpu / total * 1000,
                redis_cpu=redis_cpu / total * 1000,
                own_cpu=own_cpu / total * 1000,
                spec_errors=len(tg.spec_errors),
            )
            print(
                f"run {number}: {total} updates in {elapsed:.1f} s ({total / elapsed:.0f}/s offered)"
                f"{', a worker killed half-way' if args.kill else ''}: p50 {result.p50:.1f} ms, "
                f"p99 {result.p99:.1f} ms, max {result.max:.0f} ms; slowest answer {result.slowest_answer:.0f} ms; "
                f"refused {result.refused}, redelivered {result.redelivered}; lost {lost}, doubled {doubled}; "
                f"workers' CPU {result.cpu_per_update:.2f} ms/update (PostgreSQL {result.database_cpu:.2f}, "
                f"Redis {result.redis_cpu:.2f}, the Telegram stand-in and load {result.own_cpu:.2f}); "
                f"Bot API spec errors {result.spec_errors}",
                flush=True,
            )
            if profilers:
                print_profile([path for _, path in profilers], cpu / total * 1000)
            return result
        finally:
            for worker in workers:
                if worker.process.returncode is None:
                    worker.process.send_signal(signal.SIGTERM)
            await asyncio.gather(*(w.process.wait() for w in workers))
            await redis.flushdb()
            await redis.aclose()


async def _start_profilers(workers: list[Worker], logs: Path, number: int) -> list[tuple[Any, Path]]:
    profilers = []
    for worker in workers:
        path = logs / f"profile-{number}-{worker.port}.txt"
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"),
            *("record", "--pid", str(worker.pid), "--rate", "100", "--format", "raw"),
            *("--output", str(path)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        profilers.append((process, path))
    await asyncio.sleep(1)  # py-spy attaches
    return profilers


async def _stop_profilers(profilers: list[tuple[Any, Path]]) -> None:
    for process, _ in profilers:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
    await asyncio.gather(*(process.wait() for process, _ in profilers))


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


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="loyalty-load-") as tmp:
        logs = Path(args.profile) if args.profile else Path(tmp)
        logs.mkdir(parents=True, exist_ok=True)
        results = [await run(args, logs, n + 1) for n in range(args.runs)]
    print(
        f"{args.runs} runs at {args.rate:.0f} updates/s{' of ' + args.only if args.only else ''}: "
        f"p99 {', '.join(f'{r.p99:.0f}' for r in results)} ms; slowest answer "
        f"{max(r.slowest_answer for r in results):.0f} ms; workers' CPU "
        f"{statistics.median(r.cpu_per_update for r in results):.2f} ms/update (median); lost "
        f"{sum(r.lost for r in results)}, doubled {sum(r.doubled for r in results)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=KINDS, help="every update of this kind instead of the mix")
    parser.add_argument("--kill", action="store_true", help="kill the second worker half-way")
    parser.add_argument("--bare", action="store_true", help="bare aiogram webhook workers (bench.bare_webhook)")
    parser.add_argument("--profile", metavar="DIR", help="sample the workers with py-spy; keep the samples in DIR")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the workers")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
