"""How long each scheduler job's selection takes with many members in PostgreSQL, and its query plan.

Fills a database ``loyalty_sched_bench`` (dropped and re-created) with ``--members`` members, one purchase and
one open points lot each, birthdays spread over the year (some already greeted today), win-back looks spread
over the past and future, and then EXPLAIN ANALYZEs each job's selection as the jobs run it (LIMIT included).
Run: ``.venv/bin/python bench/scheduler.py [--members 1000000] [--pg postgresql://postgres@127.0.0.1:5432/postgres]``.
The aim: each selection under 200 ms, growing with the members due, not with all members.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import Select

from loyalty import birthdays, expiry, nps, winback
from loyalty.feedback import overdue_statement
from loyalty.program import load_program
from storage.migrate import upgrade_async

DATABASE = "loyalty_sched_bench"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: birthdays are due


def _sql(statement: Select[Any]) -> str:
    return str(statement.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


FILL = """
INSERT INTO member (telegram_id, chat_id, code, first_name, language, points, lifetime_points, joined_at,
                    last_seen_at, birth_month, birth_day, favourites, promotions, winback_nudges, winback_bonus,
                    next_nudge_at)
SELECT 1000000000 + i, 1000000000 + i, 'M' || lpad(i::text, 7, '0'), 'Member ' || i, 'en', 100, 100,
       $1::timestamptz - make_interval(days => i % 700), $1::timestamptz,
       CASE WHEN i % 3 = 0 THEN NULL ELSE 1 + i % 12 END, 1 + i % 28, '', i % 10 <> 0, 0, 0,
       -- Win-back looks spread over 200 days around now: about one in 200 members is due on a given day.
       $1::timestamptz + make_interval(days => (i % 200) - 100, hours => i % 24)
FROM generate_series(1, $2) AS i;

INSERT INTO purchase (member_id, source, external_id, amount_minor, currency, items, refunded_minor, base_points,
                      points, occurred_at, created_at)
SELECT id, 'receipt', 'R' || id, 3000, 'CNY', 1, 0, 30, 30,
       $1::timestamptz - make_interval(mins => (id * 37) % (365 * 24 * 60)),
       $1::timestamptz - make_interval(mins => (id * 37) % (365 * 24 * 60))
FROM member;

INSERT INTO ledger_entry (member_id, kind, points, remaining, expires_at, created_at)
SELECT id, 'purchase', 100, 100, $1::timestamptz + make_interval(mins => (id * 53) % (365 * 24 * 60)), $1::timestamptz
FROM member;

-- Half of today's birthdays were greeted already.
INSERT INTO notice (kind, telegram_id, period, seq, created_at)
SELECT 'birthday', telegram_id, '2026', 0, $1::timestamptz FROM member
WHERE birth_month = 11 AND birth_day = 23 AND (id / 84) % 2 = 0;
"""


async def fill(pg: str, members: int) -> str:
    admin = await asyncpg.connect(pg)
    await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    await admin.execute(f"CREATE DATABASE {DATABASE}")
    await admin.close()
    url = pg.rsplit("/", 1)[0] + "/" + DATABASE
    await upgrade_async(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    connection = await asyncpg.connect(url)
    started = time.perf_counter()
    for statement in FILL.split(";\n\n"):
        await connection.execute(statement.replace("$1", "'" + NOW.isoformat() + "'").replace("$2", str(members)))
    await connection.execute("VACUUM ANALYZE")
    print(f"filled {members:,} members in {time.perf_counter() - started:.0f} s")
    await connection.close()
    return url


async def measure(url: str) -> None:
    program = load_program()
    selections: dict[str, Any] = {  # Select of various row shapes
        "birthdays": birthdays.due(program, NOW),
        "winback": winback.due(NOW),
        "expiry warnings": expiry.due(program, NOW),
        "surveys": nps.due_statement(program, NOW),
        "overdue threads": overdue_statement(NOW, timedelta(minutes=program.support.response_target_minutes)),
    }
    connection = await asyncpg.connect(url)
    for name, statement in selections.items():
        assert statement is not None, name
        sql = _sql(statement)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            rows = await connection.fetch(sql)
            timings.append((time.perf_counter() - started) * 1000)
        plan = await connection.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        print(f"\n=== {name}: {len(rows)} rows, best {min(timings):.1f} ms, median {sorted(timings)[2]:.1f} ms")
        for line in plan:
            print("   ", line[0])
    await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    async def run() -> None:
        url = await fill(args.pg, args.members)
        await measure(url)

    asyncio.run(run())


if __name__ == "__main__":
    main()
