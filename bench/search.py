"""How fast the console's member search answers on a million members in PostgreSQL.

Fills a database ``loyalty_search_bench`` (dropped and re-created) with ``--members`` members: first names drawn
from 295 English and Chinese names (so a prefix like "ann" matches thousands and "zel" a few), an @username for
three in five, a phone number for two in five. Then times ``loyalty.members.search_members`` — what the console's
Members screen calls — for ``--queries`` random queries of each kind a person types: a member code, a name prefix
of two to four letters, a whole name, an @username prefix, a phone prefix, and text that matches nobody. Printed per
kind: p50 / p95 / max in milliseconds; and each kind's query plans (EXPLAIN ANALYZE) once, to show every query is
answered from an index. Aim: p95 under 100 ms.
Run: ``.venv/bin/python -m bench.search [--members 1000000] [--reuse]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable

import asyncpg
from sqlalchemy import event

from bench.updates import fresh_pg_database
from loyalty.members import search_members
from storage.database import make_engine, make_session_factory
from storage.migrate import upgrade_async

DATABASE = "loyalty_search_bench"
_ENGLISH = """Ann Anna Annie Amy Alex Alice Andrew Arthur Ben Bella Bob Carl Chloe Chris Dan Daisy David Dora Ed Ella
Emma Eric Eva Fay Frank Grace Greg Hana Harry Helen Ian Ivy Jack Jane Jay Joe John Judy Kate Ken Kim Leo Lily Lucy
Mark Mary Max Mia Mike Nina Noah Olga Oscar Paul Peter Rose Ruby Sam Sara Tom Tina Uma Vera Will Zoe Zelda Wei Li
Ming Hua Jun Yan Xin Lei Fang Jing Hui Ling Mei Qiang Tao Yu Hong Ping Bo Chen Lin Yun"""
_CHINESE = "伟 芳 娜 敏 静 丽 强 磊 军 洋 勇 艳 杰 娟 涛 明 超 秀英 霞 平 刚 桂英 小明 小红 志强 建华 晓东"
NAMES = _ENGLISH.split() + _CHINESE.split()
NAMES += [name + suffix for name in NAMES[:60] for suffix in ("ie", "na", "son")]  # rarer names sharing prefixes

ASCII_NAMES = [name for name in NAMES if name.isascii()]
_CODE_DIGITS = str.maketrans("01", "AB")  # member codes have no 0 or 1 (loyalty.codes)

FILL = """
INSERT INTO member (telegram_id, chat_id, code, first_name, username, phone, language, points, lifetime_points,
                    joined_at, last_seen_at, favourites, promotions, winback_nudges, winback_bonus)
SELECT 3000000000 + i, 3000000000 + i, 'M' || translate(lpad(i::text, 7, '0'), '01', 'AB'),
       ($names::text[])[1 + (i::bigint * 7919) % $count],
       CASE WHEN i % 5 < 3 THEN lower(($names::text[])[1 + (i::bigint * 7919) % $count]) || '_' || i END,
       CASE WHEN i % 5 >= 3 THEN '+86' || (13000000000 + (i::bigint * 104729) % 9000000000)::text END,
       'en', i % 900, 0, now() - make_interval(days => i % 1000), now(), '', true, 0, 0
FROM generate_series(1, $members) AS i
"""


async def fill(server: str, members: int) -> str:
    url = await fresh_pg_database(server, DATABASE)
    if url is None:
        raise SystemExit(f"no PostgreSQL answers at {server}")
    await upgrade_async(url)
    connection = await asyncpg.connect(f"postgresql://{server}/{DATABASE}")
    started = time.perf_counter()
    names = "ARRAY[" + ",".join("'" + name.replace("'", "''") + "'" for name in NAMES) + "]"
    await connection.execute(
        FILL.replace("$names", names).replace("$count", str(len(NAMES))).replace("$members", str(members))
    )
    await connection.execute("VACUUM ANALYZE member")
    print(f"filled {members:,} members in {time.perf_counter() - started:.0f} s")
    await connection.close()
    return url


def _kinds(members: int, rng: random.Random) -> dict[str, Callable[[], str]]:
    def name() -> str:
        return rng.choice(NAMES)

    return {
        "member code": lambda: "M" + f"{rng.randint(1, members):07d}".translate(_CODE_DIGITS),
        "name prefix": lambda: name()[: rng.randint(2, 4)],
        "whole name": name,
        "@username": lambda: "@" + rng.choice(ASCII_NAMES).lower()[: rng.randint(3, 6)],
        "phone prefix": lambda: "+86 13" + str(rng.randint(0, 99)).zfill(2),
        "nobody": lambda: "Qzx" + str(rng.randint(1, 999)),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200, help="per kind")
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    parser.add_argument("--reuse", action="store_true", help="keep the database of an earlier run")
    args = parser.parse_args()
    url = f"postgresql+asyncpg://{args.pg}/{DATABASE}" if args.reuse else await fill(args.pg, args.members)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    rng = random.Random(7)
    plans: list[str] = []
    explain = False

    @event.listens_for(engine.sync_engine, "before_cursor_execute", retval=True)
    def _plan(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        # Once per kind, each SELECT the search makes is run as EXPLAIN ANALYZE first.
        if explain and statement.lstrip().upper().startswith("SELECT"):
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + statement, parameters)
            plans.append("\n".join("      " + row[0] for row in cursor.fetchall()))
        return statement, parameters

    try:
        for kind, make in _kinds(args.members, rng).items():
            explain = True
            async with sessions() as session:
                found = await search_members(session, sample := make())
            explain = False
            print(f"{kind} ({sample!r}, {len(found)} found): {len(plans)} queries")
            for plan in plans:
                print(plan)
            plans.clear()
            timings, counts = [], []
            for _ in range(args.queries):
                query = make()
                started = time.perf_counter()
                async with sessions() as session:
                    counts.append(len(await search_members(session, query)))
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            p95 = timings[int(len(timings) * 0.95) - 1]
            print(
                f"  {kind:>12}: p50 {statistics.median(timings):.1f} ms, p95 {p95:.1f} ms, max {timings[-1]:.1f} ms "
                f"(found {statistics.mean(counts):.1f} on average)"
            )
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
