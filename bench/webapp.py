"""The Mini App's JSON endpoints under load, and how soon a member sees their balance in a real browser.

Seeds ``--members`` members with purchases in a fresh database, then serves the real HTTP app (``loyalty run``'s
composition: ``bot.runner.build_services`` and ``web.server.make_http_app`` with ``webapp_url`` set) in a child
process on 127.0.0.1, beside a second child playing Telegram (``emulator.FakeTelegram``, which the till's purchase
notice is sent to). This process plays ``--users`` concurrent virtual users, each with its own signed initData:

* ``GET /app/api/home``: a member opening the app (a random seeded member each);
* ``POST /app/api/till/purchases``: a cashier (a ``cashier_ids`` id each) recording an amount like "12.50" for a
  random member, with a fresh key each time.

Each endpoint is driven alone for ``--seconds``, once per ``--think`` pause: with 0, every user sends its next
request as soon as the last is answered (the most the server does: requests/second; latency is mostly the queue,
since 50 users waiting on one process wait on each other); with a pause, each user waits that long between
requests, as people do. Printed per database and endpoint: p50 / p95 / p99 latency, requests/second, the server's
CPU per request. Aim: p95 under 30 ms.
Then headless Chromium (Debian's, Playwright, Telegram's script replaced by web/miniapp/static/telegram-stand-in.js
as in tests/test_miniapp_browser.py) opens the app ``--opens`` times, each in a fresh page with an empty cache, and
waits until ``#balance`` is visible: the median is "from opening the app to the balance shown". The first open's
responses give the first load's size (page, CSS, JS, first screen; Telegram's script left out), raw and gzip-9.
``--profile DIR`` samples the server with py-spy during each timed run (raw samples in DIR).
Run: ``.venv/bin/python -m bench.webapp [--database sqlite|postgresql|both] [--users 50] [--seconds 20]``.
PostgreSQL: the database ``test_bench`` at ``--pg`` (its public schema is dropped and migrated afresh).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import aiohttp
from playwright.async_api import Response
from sqlalchemy import text

from bench.load import _free_port, cpu_seconds
from emulator.webapp import init_data, launch_url
from loyalty.members import join
from loyalty.program import load_program
from loyalty.purchases import record_purchase
from loyalty.rewards import sync_catalog
from storage.clock import utcnow
from storage.database import make_engine, make_session_factory
from storage.migrate import upgrade_async

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = ROOT / "web" / "miniapp" / "static" / "telegram-stand-in.js"
TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"
CHROMIUM = "/usr/bin/chromium"
TOKEN = "123456:BENCH-WEBAPP-TOKEN"
APP_URL = "https://bench.example.com/app/"
PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test_bench"
FIRST_MEMBER = 800_000
CASHIER_BASE = 9_500  # cashier ids 9500, 9501, ...: one per virtual user
SEED_CONCURRENCY = 8
AIM_P95_MS = 30.0


# ------------------------------------------------------------------------------------------------ the children


def _server_env(database: str, http_port: int, telegram_url: str, users: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    env.update(
        LOYALTY_BOT_TOKEN=TOKEN,
        LOYALTY_TELEGRAM_API_URL=telegram_url,
        LOYALTY_DATABASE_URL=database,
        LOYALTY_HTTP_HOST="127.0.0.1",
        LOYALTY_HTTP_PORT=str(http_port),
        LOYALTY_CASHIER_IDS=",".join(str(CASHIER_BASE + i) for i in range(users)),
        PYTHONPATH=str(ROOT),
    )
    return env


async def serve_app() -> None:
    """Child: the HTTP app as ``loyalty run`` composes it, with the Mini App on, until SIGTERM."""
    from bot.heap import freeze_startup_heap
    from bot.runner import build_services, warm_models
    from bot.settings import Settings
    from web.server import make_http_app, start_http

    settings = Settings(_env_file=None).model_copy(update={"webapp_url": APP_URL})  # type: ignore[call-arg]
    services = await build_services(settings)
    runner = await start_http(make_http_app(services, serve_updates=True), settings.http_host, settings.http_port)
    warm_models()
    freeze_startup_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await services.close()


async def serve_telegram(port: int) -> None:
    """Child: the fake Bot API the purchase notices go to; it keeps no record of calls (it would only grow)."""
    from emulator import FakeTelegram

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tg = FakeTelegram(TOKEN, strict=False)
    tg.listeners.append(lambda call: tg.calls.clear())
    await tg.start(port=port)
    try:
        await stop.wait()
    finally:
        await tg.stop()


@dataclass
class Child:
    process: asyncio.subprocess.Process
    log: Path

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def _spawn(role: str, env: dict[str, str], logs: Path, *extra: str) -> Child:
    log = logs / f"{role}.log"
    with log.open("w") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.webapp", "--role", role, *extra, env=env, stdout=out, stderr=out
        )
    return Child(process, log)


async def _wait_for(http: aiohttp.ClientSession, url: str, child: Child) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.process.returncode is None:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise SystemExit(f"{url} did not answer; the child's log:\n{child.log.read_text()[-3000:]}")


# ------------------------------------------------------------------------------------------------ the database


async def fresh_database(url: str) -> None:
    """An empty, migrated database: PostgreSQL's public schema dropped as tests/conftest.py does."""
    if url.startswith("postgresql"):
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        finally:
            await engine.dispose()
    await upgrade_async(url)


async def seed(url: str, members: int) -> list[str]:
    """``members`` members who joined and made one to three purchases each; their member codes."""
    program = load_program()
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    codes: list[str] = [""] * members
    gate = asyncio.Semaphore(1 if url.startswith("sqlite") else SEED_CONCURRENCY)
    rng = random.Random(7)

    async def one(i: int) -> None:
        async with gate, sessions() as session:
            now = utcnow()
            joined = await join(
                session,
                program,
                telegram_id=FIRST_MEMBER + i,
                chat_id=FIRST_MEMBER + i,
                first_name=f"Member{i}",
                last_name=None,
                username=None,
                language_code=("en", "zh-hans", "zh-hant")[i % 3],
                payload=None,
                now=now,
            )
            member = joined.member
            assert member.id is not None
            codes[i] = member.code
            for n in range(1 + i % 3):
                await record_purchase(
                    session,
                    program,
                    member_id=member.id,
                    amount=program_amount(rng),
                    source="seed",
                    external_id=f"{i}-{n}",
                    now=now,
                    category="coffee" if n % 2 == 0 else None,
                )

    try:
        async with sessions() as session:
            await sync_catalog(session, program)
        await asyncio.gather(*(one(i) for i in range(members)))
    finally:
        await engine.dispose()
    return codes


def program_amount(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(300, 9000)) / 100


# ------------------------------------------------------------------------------------------------ load


@dataclass
class Run:
    endpoint: str
    think: float
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu: float = 0.0  # the server's CPU seconds during the run

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def auth_for(user_id: int, first_name: str, language: str = "en") -> dict[str, str]:
    user = {"id": user_id, "first_name": first_name, "language_code": language}
    return {"Authorization": f"tma {init_data(TOKEN, user)}"}


Request = Callable[[aiohttp.ClientSession, int], Awaitable[int]]


def home_request(base: str, users: int, codes: list[str]) -> Request:
    # Each virtual user is a different seeded member, signed once as Telegram does when the app opens.
    picked = random.Random(1).sample(range(len(codes)), users)
    headers = [auth_for(FIRST_MEMBER + i, f"Member{i}") for i in picked]

    async def call(http: aiohttp.ClientSession, user: int) -> int:
        async with http.get(f"{base}api/home", headers=headers[user]) as response:
            await response.read()
            return response.status

    return call


def purchase_request(base: str, users: int, codes: list[str]) -> Request:
    headers = [auth_for(CASHIER_BASE + i, f"Cashier{i}") for i in range(users)]

    async def call(http: aiohttp.ClientSession, user: int) -> int:
        body = {
            "member": random.choice(codes),
            "amount": f"{random.randint(100, 9999) / 100:.2f}",
            "key": secrets.token_urlsafe(12),
        }
        async with http.post(f"{base}api/till/purchases", json=body, headers=headers[user]) as response:
            await response.read()
            return response.status

    return call


async def drive(
    http: aiohttp.ClientSession, name: str, call: Request, users: int, seconds: float, think: float, server_pid: int
) -> Run:
    run = Run(name, think)
    # A short warm-up at full concurrency: connections opened, caches filled, as in a server that has run a while.
    await _loop(http, call, users, 1.5, 0.0, Run(name, 0.0))
    cpu_before = cpu_seconds(server_pid)
    started = time.perf_counter()
    await _loop(http, call, users, seconds, think, run)
    run.seconds = time.perf_counter() - started
    run.cpu = cpu_seconds(server_pid) - cpu_before
    return run


async def _loop(http: aiohttp.ClientSession, call: Request, users: int, seconds: float, think: float, run: Run) -> None:
    end = time.perf_counter() + seconds

    async def user(n: int) -> None:
        if think:
            await asyncio.sleep(random.uniform(0, think))  # users do not all start in the same millisecond
        while time.perf_counter() < end:
            started = time.perf_counter()
            status = await call(http, n)
            took = time.perf_counter() - started
            if status in (200, 201):
                run.latencies.append(took)
            else:
                run.errors[status] = run.errors.get(status, 0) + 1
            if think:
                await asyncio.sleep(random.uniform(0.5, 1.5) * think)

    await asyncio.gather(*(user(n) for n in range(users)))


# ------------------------------------------------------------------------------------------------ the browser


@dataclass
class BrowserResult:
    opens: list[float]  # seconds from navigating to #balance visible
    first_load: list[tuple[str, int, int]]  # (path, bytes, gzip bytes)


def _collector(seen: list[Response]) -> Callable[[Response], None]:
    def collect(response: Response) -> None:  # Playwright tags its handlers: a bound list.append would not do
        seen.append(response)

    return collect


async def browser_opens(app_url: str, member_id: int, first_name: str, opens: int) -> BrowserResult:
    from playwright.async_api import async_playwright

    async def stand_in(route: object) -> None:
        await route.fulfill(path=STAND_IN, content_type="text/javascript")  # type: ignore[attr-defined]

    times: list[float] = []
    first: list[tuple[str, int, int]] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            for n in range(opens + 1):  # the first open starts Chromium's renderer and is not counted
                page = await browser.new_page(viewport={"width": 390, "height": 844})  # a new context: empty cache
                await page.route(f"{TELEGRAM_SCRIPT}*", stand_in)
                responses: list[Response] = []
                page.on("response", _collector(responses))
                url = launch_url(app_url, init_data(TOKEN, {"id": member_id, "first_name": first_name}))
                started = time.perf_counter()
                await page.goto(url, wait_until="commit")
                await page.locator("#balance").wait_for(state="visible")
                took = time.perf_counter() - started
                if n:
                    times.append(took)
                else:
                    for response in responses:
                        if response.url.startswith(TELEGRAM_SCRIPT):
                            continue
                        body = await response.body()
                        path = response.url.split("#", 1)[0].replace(app_url, "/app/", 1)
                        first.append((path, len(body), len(gzip.compress(body, 9))))
                await page.context.close()
        finally:
            await browser.close()
    return BrowserResult(times, first)


# ------------------------------------------------------------------------------------------------ a database


@dataclass
class Measured:
    database: str
    runs: list[Run]
    browser: BrowserResult | None


async def measure(name: str, url: str, args: argparse.Namespace, logs: Path) -> Measured:
    print(f"\n== {name}: migrating and seeding {args.members} members ...", flush=True)
    started = time.perf_counter()
    await fresh_database(url)
    codes = await seed(url, args.members)
    print(f"   seeded in {time.perf_counter() - started:.1f} s", flush=True)
    http_port, tg_port = _free_port(), _free_port()
    telegram_url = f"http://127.0.0.1:{tg_port}"
    env = _server_env(url, http_port, telegram_url, args.users)
    telegram = await _spawn("telegram", env, logs, "--port", str(tg_port))
    server = await _spawn("server", env, logs)
    base = f"http://127.0.0.1:{http_port}/app/"
    runs: list[Run] = []
    browser = None
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as http:
            await _wait_for(http, f"{telegram_url}/bot{TOKEN}/getMe", telegram)
            await _wait_for(http, f"http://127.0.0.1:{http_port}/readyz", server)
            endpoints = {
                "GET /app/api/home": home_request(base, args.users, codes),
                "POST /app/api/till/purchases": purchase_request(base, args.users, codes),
            }
            for endpoint, call in endpoints.items():
                for think in args.think:
                    spy = await _profile(args.profile, server.process.pid, name, endpoint, think, args.seconds)
                    run = await drive(http, endpoint, call, args.users, args.seconds, think, server.process.pid)
                    if spy is not None:
                        await spy.wait()
                    runs.append(run)
                    print(f"   {_line(run)}", flush=True)
        if args.opens:
            browser = await browser_opens(base, FIRST_MEMBER, "Member0", args.opens)
    finally:
        await server.stop()
        await telegram.stop()
    return Measured(name, runs, browser)


async def _profile(
    folder: Path | None, pid: int, database: str, endpoint: str, think: float, seconds: float
) -> asyncio.subprocess.Process | None:
    """py-spy sampling the server for the warm-up and the timed run (raw samples: ``bench.profile`` reads them)."""
    if folder is None:
        return None
    slug = f"{database}-{endpoint.split('/')[-1]}-think{think:g}".lower()
    spy = Path(sys.executable).with_name("py-spy")
    command = [str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--nonblocking"]
    command += ["--duration", str(int(seconds + 2)), "--output", str(folder / f"{slug}.txt")]
    return await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL)


def _line(run: Run) -> str:
    errors = f"  errors {run.errors}" if run.errors else ""
    cpu = run.cpu / len(run.latencies) * 1000 if run.latencies else float("nan")
    return (
        f"{run.endpoint:<30} think {run.think:>4.2g}s  p50 {run.percentile(50):6.1f}  p95 {run.percentile(95):6.1f}"
        f"  p99 {run.percentile(99):6.1f} ms  {run.rate:7.0f} req/s  server CPU {cpu:5.2f} ms/req{errors}"
    )


def report(results: list[Measured], args: argparse.Namespace) -> None:
    print(f"\n{args.users} virtual users, {args.seconds:g} s per run, {args.members} seeded members")
    header = f"{'database':<12}{'endpoint':<30}{'think s':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'req/s':>8}"
    print(header + f"{'CPU ms/req':>11}  aim: p95 < {AIM_P95_MS:g} ms")
    for result in results:
        for run in result.runs:
            cpu = run.cpu / len(run.latencies) * 1000 if run.latencies else float("nan")
            verdict = "ok" if run.percentile(95) < AIM_P95_MS else "over"
            print(
                f"{result.database:<12}{run.endpoint:<30}{run.think:>8.2g}{run.percentile(50):>8.1f}"
                f"{run.percentile(95):>8.1f}{run.percentile(99):>8.1f}{run.rate:>8.0f}{cpu:>11.2f}  {verdict}"
                + (f"  errors {run.errors}" if run.errors else "")
            )
    for result in results:
        if result.browser is None or not result.browser.opens:
            continue
        opens = result.browser.opens
        print(
            f"\n{result.database}: open the app -> #balance visible, headless Chromium, {len(opens)} fresh pages: "
            f"median {statistics.median(opens) * 1000:.0f} ms "
            f"(min {min(opens) * 1000:.0f}, max {max(opens) * 1000:.0f})"
        )
    loaded = next((r.browser.first_load for r in results if r.browser and r.browser.first_load), None)
    if loaded:
        print("\nfirst load (telegram-web-app.js excluded):")
        for path, size, packed in loaded:
            print(f"  {path[:60]:<60}{size:>9} B{packed:>9} B gzip")
        raw, packed = sum(s for _, s, _ in loaded), sum(p for _, _, p in loaded)
        print(f"  {'total':<60}{raw:>9} B{packed:>9} B gzip  (aim: <= 150 KB compressed)")


async def main_async(args: argparse.Namespace) -> None:
    databases: list[tuple[str, str]] = []
    if args.database in ("sqlite", "both"):
        databases.append(("SQLite", ""))
    if args.database in ("postgresql", "both"):
        databases.append(("PostgreSQL", args.pg))
    results = []
    with tempfile.TemporaryDirectory(prefix="loyalty-webapp-bench-") as tmp:
        for name, url in databases:
            results.append(await measure(name, url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", args, Path(tmp)))
    report(results, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--members", type=int, default=3000)
    parser.add_argument(
        "--think",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.0, 0.5],
        help="pauses between a user's requests, comma-separated seconds (0: as fast as answered)",
    )
    parser.add_argument("--opens", type=int, default=10, help="browser opens to time (0: none)")
    parser.add_argument("--pg", default=PG_DEFAULT, help="the PostgreSQL database to use (its schema is reset)")
    parser.add_argument("--profile", type=Path, help="a folder for py-spy's samples of the server")
    parser.add_argument("--role", choices=["bench", "server", "telegram"], default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        asyncio.run(serve_app())
    elif args.role == "telegram":
        asyncio.run(serve_telegram(args.port))
    else:
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
