"""Where a worker's CPU goes: py-spy's raw samples (``py-spy record --format raw``) sorted into the parts of
handling an update, innermost part first. Run on saved samples: ``.venv/bin/python -m bench.profile FILE...``."""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

# A frame belongs to the first part whose pattern it matches; a sample to the part of its innermost frame that
# matches any. Libraries every part uses (redis-py, asyncio, pydantic, json) match none, so their time goes to
# the part that called them: a Redis GET to the FSM state read, a model to the update parsing or the reply.
PARTS: list[tuple[str, str]] = [
    ("secret check", r"verify_secret"),
    ("redelivery record", r"bot/dedupe\.py"),
    ("conversation gate (bot.gate: record, lock, state)", r"bot/gate\.py"),
    (
        "event isolation (Redis lock)",
        r"redis/asyncio/lock\.py|RedisEventIsolation|fsm/storage/base\.py.*lock|isolation",
    ),
    ("FSM state read", r"fsm/middleware\.py|fsm/context\.py|fsm/storage/redis\.py|fsm/storage/memory\.py|fsm/"),
    ("metrics", r"prometheus_client|bot/metrics\.py"),
    ("the reply (Bot API request)", r"aiogram/client/|bot/session\.py|aiohttp/client|aiohttp/connector"),
    ("database", r"sqlalchemy|asyncpg|aiosqlite|storage/"),
    ("domain (loyalty/)", r"loyalty/"),
    ("rendering (handlers, texts, i18n)", r"handlers/|notifications/|babel|gettext|aiogram/utils/i18n"),
    ("member lookup and session (UpdateContext)", r"bot/middlewares\.py"),
    ("aiogram dispatch (routers, filters, middlewares)", r"aiogram/dispatcher|aiogram/filters|aiogram/handlers"),
    ("update parsing", r"aiogram/types|aiogram/webhook|pydantic"),
    ("aiohttp request handling", r"aiohttp/web_"),
    (
        "event loop and socket reads (between handlers)",
        r"^(BaseEventLoop\.\w+|Handle\._run|EpollSelector\.\w+|_BaseSelectorImpl\.\w+"
        r"|BaseSelectorEventLoop\._process_events) ",
    ),
]
# py-spy counts a thread waiting in epoll as busy when it catches it there on the way in or out: that is idle
# time, and left out (the CPU measured from /proc agrees with the samples once it is).
IDLE = re.compile(r"Selector\.select \(selectors\.py")
_COMPILED = [(name, re.compile(pattern)) for name, pattern in PARTS]
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*)\)$")


def part_of(frames: list[str]) -> str:
    if frames and IDLE.search(frames[-1]):
        return "idle"
    for frame in reversed(frames):
        for name, pattern in _COMPILED:
            if pattern.search(frame):
                return name
    return "other"


def read_samples(paths: list[Path]) -> Counter[str]:
    parts: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            # The first entry names the process and thread; the rest are frames, outermost first.
            frames = [f for f in stack.split(";") if _FRAME.match(f)]
            parts[part_of(frames)] += int(count)
    return parts


def print_profile(paths: list[Path], cpu_per_update_ms: float | None = None) -> None:
    parts = read_samples(paths)
    idle = parts.pop("idle", 0)
    total = sum(parts.values())
    if not total:
        print("  (no samples: is py-spy allowed to attach? it needs ptrace)")
        return
    header = f"  {'part':<50}{'share':>7}" + (f"{'ms/update':>11}" if cpu_per_update_ms else "")
    print(header)
    for name, count in parts.most_common():
        line = f"  {name:<50}{count / total:>7.1%}"
        if cpu_per_update_ms:
            line += f"{count / total * cpu_per_update_ms:>11.2f}"
        print(line)
    print(f"  ({total} samples; {idle} more idle in epoll, left out)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--cpu", type=float, help="CPU ms per update, to print each part's share in ms")
    parser.add_argument("--other", action="store_true", help="print the commonest frames of unsorted samples")
    args = parser.parse_args()
    print_profile(args.files, args.cpu)
    if args.other:
        frames: Counter[str] = Counter()
        for path in args.files:
            for line in path.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                fs = [f for f in stack.split(";") if _FRAME.match(f)]
                if part_of(fs) == "other" and fs:
                    frames[fs[-1]] += int(count)
        for frame, count in frames.most_common(30):
            print(f"{count:>7}  {frame}")
    sys.exit(0)


if __name__ == "__main__":
    main()
