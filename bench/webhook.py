"""/balance on the production path next to stock aiogram on the same path, in one run.

Both stacks run as two webhook worker processes on Redis behind the same simulated Telegram (``bench.load``):
ours is ``loyalty run --role bot`` on PostgreSQL; the bare one (``bench.bare_webhook``) is aiogram with its own
RedisStorage and Redis event isolation, answering every message "ok". The stacks alternate for ``--rounds``
rounds at ``--rate`` updates a second of /balance; printed per stack: the workers' CPU per update and p50 / p99
of the webhook's answer (medians over the rounds), and the ratio of CPU to the bare stack's.
Run: ``.venv/bin/python -m bench.webhook [--rate 200] [--seconds 15] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from bench.load import Result, run


async def main_async(args: argparse.Namespace) -> None:
    stacks = {"bare aiogram webhook, RedisStorage": True, "/balance, webhook + Redis + PostgreSQL": False}
    results: dict[str, list[Result]] = {name: [] for name in stacks}
    with tempfile.TemporaryDirectory(prefix="loyalty-webhook-") as tmp:
        for n in range(args.rounds):
            for name, bare in stacks.items():
                options = argparse.Namespace(
                    rate=args.rate,
                    seconds=args.seconds,
                    only="/balance",
                    kill=False,
                    profile=None,
                    env=[],
                    pg=args.pg,
                    bare=bare,
                )
                results[name].append(await run(options, Path(tmp), n + 1))
    bare = statistics.median(r.cpu_per_update for r in results["bare aiogram webhook, RedisStorage"])
    print(f"\n{args.rate:.0f} updates/s of /balance, two workers, {args.rounds} rounds (medians)")
    print(f"{'stack':<42}{'CPU ms/update':>15}{'vs bare':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for name, runs in results.items():
        cpu = statistics.median(r.cpu_per_update for r in runs)
        p50 = statistics.median(r.p50 for r in runs)
        p99 = statistics.median(r.p99 for r in runs)
        print(f"{name:<42}{cpu:>15.2f}{cpu / bare:>9.2f}{p50:>9.1f}{p99:>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
