"""Memory of an idle ``loyalty run``: RSS (and PSS, USS) after /start, /balance and /card.

Starts the Bot API emulator in this process and ``loyalty run`` (``python -m bot.cli run``, role ``all``: the bot
and the scheduler, long polling) as a separate process on a fresh SQLite database, so the emulator's memory is
not counted. Once the bot polls, one member sends /start, /balance and /card and every reply is awaited; after
``--idle`` seconds of idling the bot process's memory is read from /proc (``VmRSS`` and ``VmHWM`` of
``/proc/PID/status``; ``Pss`` and USS, its private pages, from ``/proc/PID/smaps_rollup``), then the process is
stopped with SIGINT as a terminal would. The same is read once when polling starts, before any update.
Printed: each run's figures and the median over the runs. Aim (issue 17): under 150 MB RSS.
Run from the repository root: ``.venv/bin/python -m bench.memory [--runs 3] [--idle 3]`` (Linux: reads /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emulator import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
MEMBER_ID = 501
COMMANDS = (("/start", "sendMessage"), ("/balance", "sendMessage"), ("/card", "sendPhoto"))
START_TIMEOUT = 60.0  # a cold start (imports, migrations) on a slow machine takes seconds, not a minute
REPLY_TIMEOUT = 20.0
QUIET = 0.5  # a reply is complete once the bot has made no request for this long (getUpdates aside)
STOP_TIMEOUT = 20.0
MIB = 1024 * 1024


class BenchError(Exception):
    """The run cannot go on; the message says why (the bot's log is added)."""


@dataclass(frozen=True)
class Memory:
    rss: int  # bytes
    hwm: int  # peak RSS
    pss: int
    uss: int  # private pages: what stopping the process would give back

    def row(self) -> str:
        return (
            f"RSS {self.rss / MIB:6.1f} MiB  peak {self.hwm / MIB:6.1f}  "
            f"PSS {self.pss / MIB:6.1f}  USS {self.uss / MIB:6.1f}"
        )


def read_memory(pid: int) -> Memory:
    def fields(path: str) -> dict[str, int]:
        found = {}
        for line in Path(path).read_text().splitlines():
            name, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                found[name.strip()] = int(parts[0]) * 1024
        return found

    status = fields(f"/proc/{pid}/status")
    rollup = fields(f"/proc/{pid}/smaps_rollup")
    return Memory(
        rss=status["VmRSS"],
        hwm=status["VmHWM"],
        pss=rollup["Pss"],
        uss=rollup["Private_Clean"] + rollup["Private_Dirty"],
    )


def _tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_for(
    tg: FakeTelegram, process: asyncio.subprocess.Process, condition: Callable[[], bool], seconds: float, what: str
) -> None:
    """Re-check ``condition`` whenever the bot makes a request (and every 0.1 s), for up to ``seconds``; give up
    at once if the bot exits."""
    changed = asyncio.Event()

    def listener(_call: object) -> None:
        changed.set()

    tg.listeners.append(listener)
    try:
        async with asyncio.timeout(seconds):
            while not condition():
                if process.returncode is not None:
                    raise BenchError(f"the bot exited ({process.returncode}) while waiting for {what}")
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 0.1)
    except TimeoutError:
        raise BenchError(f"timed out after {seconds:.0f} s waiting for {what}") from None
    finally:
        tg.listeners.remove(listener)


def _replied(tg: FakeTelegram, method: str, before: int) -> Callable[[], bool]:
    """Whether the bot has called ``method`` for the member since it had made ``before`` such calls."""
    return lambda: any(call.chat_id == MEMBER_ID for call in tg.calls_of(method)[before:])


async def _settle(tg: FakeTelegram) -> None:
    """Wait until the bot has made no request but getUpdates for QUIET seconds (a reply may be several)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REPLY_TIMEOUT

    def busy() -> int:
        return sum(1 for call in tg.calls if call.method != "getUpdates")

    seen, quiet_since = busy(), loop.time()
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        if busy() != seen:
            seen, quiet_since = busy(), loop.time()
        elif loop.time() - quiet_since >= QUIET:
            return


async def _stop(process: asyncio.subprocess.Process) -> str:
    """SIGINT, as Ctrl-C; SIGKILL if it has not stopped within STOP_TIMEOUT. Returns how it ended."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            return "killed (did not stop on SIGINT)"
    return f"exit code {process.returncode}"


async def one_run(idle: float) -> tuple[Memory, Memory]:
    """(memory when polling starts, memory after the three commands and ``idle`` seconds)."""
    with tempfile.TemporaryDirectory(prefix="loyalty-memory-") as workdir:
        async with FakeTelegram(token="7000000002:MEMORY-BENCH", bot_username="loyalty_memory_bot") as tg:
            env = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
            env.update(
                LOYALTY_BOT_TOKEN=tg.token,
                LOYALTY_TELEGRAM_API_URL=tg.base_url,
                LOYALTY_DATABASE_URL=f"sqlite+aiosqlite:///{Path(workdir) / 'memory.db'}",
                LOYALTY_HTTP_HOST="127.0.0.1",
                LOYALTY_HTTP_PORT=str(_free_port()),
                PYTHONPATH=str(ROOT),
            )
            # Logs go to a file, not a pipe nobody reads (a full pipe would block the bot).
            with (Path(workdir) / "bot.log").open("wb") as log:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bot.cli", "run", cwd=workdir, env=env, stdout=log, stderr=log
                )
                try:
                    await _wait_for(
                        tg, process, lambda: bool(tg.calls_of("getUpdates")), START_TIMEOUT, "the bot to poll"
                    )
                    await _settle(tg)
                    polling = read_memory(process.pid)
                    user = tg.user(MEMBER_ID, "Ann", "ann_memory")
                    for command, method in COMMANDS:
                        before = len(tg.calls_of(method))
                        tg.push_update(tg.message_update(user, command))
                        await _wait_for(
                            tg, process, _replied(tg, method, before), REPLY_TIMEOUT, f"the reply to {command}"
                        )
                        await _settle(tg)
                    await asyncio.sleep(idle)
                    if process.returncode is not None:
                        raise BenchError(f"the bot exited ({process.returncode}) while idling")
                    idle_memory = read_memory(process.pid)
                except BenchError as exc:
                    await _stop(process)
                    raise SystemExit(f"{exc}; the bot's log ends:\n{_tail(Path(workdir) / 'bot.log')}") from None
                finally:
                    ended = await _stop(process)
            # The getUpdates in flight when the bot stopped has no answer yet: not a refusal.
            failed = [c.method for c in tg.calls if c.response and not c.ok]
            if tg.spec_errors or failed or ended != "exit code 0":
                print(
                    f"  warning: {ended}; {len(tg.spec_errors)} spec error(s); refused: {failed}; "
                    f"the bot's log ends:\n{_tail(Path(workdir) / 'bot.log')}",
                    file=sys.stderr,
                )
    return polling, idle_memory


def _median(memories: list[Memory]) -> Memory:
    def med(values: list[int]) -> int:
        return int(statistics.median(values))

    return Memory(
        rss=med([m.rss for m in memories]),
        hwm=med([m.hwm for m in memories]),
        pss=med([m.pss for m in memories]),
        uss=med([m.uss for m in memories]),
    )


async def run(runs: int, idle: float) -> None:
    polled, idled = [], []
    for n in range(1, runs + 1):
        polling, idle_memory = await one_run(idle)
        polled.append(polling)
        idled.append(idle_memory)
        print(f"run {n}: polling  {polling.row()}")
        print(f"run {n}: idle     {idle_memory.row()}")
    median = _median(idled)
    print(f"median of {runs} polling: {_median(polled).row()}")
    print(f"median of {runs} idle:    {median.row()}   (aim: RSS under 150 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=3.0, help="seconds idle after the last reply")
    args = parser.parse_args()
    asyncio.run(run(args.runs, args.idle))


if __name__ == "__main__":
    main()
