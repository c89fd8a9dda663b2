"""How long the whole /stats dashboard takes on a large program in PostgreSQL.

Fills a database ``loyalty_analytics_bench`` (dropped and re-created) with ``--members`` members joined over
three years, ``--purchases`` purchases over the last two years (some refunded) with their ledger entries,
redemptions, expiries, NPS answers, support threads and campaign messages; then times
``loyalty.metrics.dashboard`` (every figure, trend and cohort of /stats) for 7d, 30d, 90d and 12m as computed
live, the same dashboard read back from the scheduler's snapshot (what /stats serves for these periods), and the
chart drawing. Aim: /stats under 3 seconds.
Run: ``.venv/bin/python -m bench.analytics [--members 1000000] [--purchases 5000000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

import asyncpg

from bench.updates import fresh_pg_database
from handlers import charts
from loyalty import metrics
from loyalty.program import load_program
from storage.database import make_engine, make_session_factory
from storage.migrate import upgrade_async
from storage.models import StatsSnapshot

DATABASE = "loyalty_analytics_bench"
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)

FILL = """
INSERT INTO member (telegram_id, chat_id, code, first_name, language, points, lifetime_points, joined_at,
                    last_seen_at, favourites, promotions, winback_nudges, winback_bonus, tier)
SELECT 2000000000 + i, 2000000000 + i, 'A' || lpad(i::text, 7, '0'), 'Member ' || i,
       (ARRAY['en', 'zh-Hans', 'zh-Hant'])[1 + i % 3], (i::bigint * 7919) % 900, 0,
       $now::timestamptz - make_interval(secs => ((i::bigint * 7919) % (3 * 365 * 86400))), $now::timestamptz,
       '', i % 10 <> 0, 0, 0, (ARRAY[NULL, NULL, NULL, 'Silver', 'Silver', 'Gold'])[1 + i % 6]
FROM generate_series(1, $members) AS i;

-- Purchases over the last two years, never before the member joined; one in twenty refunded in full.
INSERT INTO purchase (member_id, source, external_id, amount_minor, currency, items, refunded_minor, base_points,
                      points, occurred_at, created_at)
SELECT m.id, 'receipt', 'P' || g.i, 1000 + (g.i * 37) % 9000, 'CNY', 1,
       CASE WHEN g.i % 20 = 0 THEN 1000 + (g.i * 37) % 9000 ELSE 0 END, 10, 10, t.at, t.at
FROM generate_series(1, $purchases) AS g(i)
JOIN member m ON m.id = 1 + (g.i::bigint * 104729) % $members
CROSS JOIN LATERAL (SELECT greatest(m.joined_at,
    $now::timestamptz - make_interval(secs => ((g.i::bigint * 15485863) % (2 * 365 * 86400)))) AS at) t;

INSERT INTO ledger_entry (member_id, kind, points, remaining, purchase_id, created_at)
SELECT member_id, 'purchase', 10, 0, id, occurred_at FROM purchase;

INSERT INTO ledger_entry (member_id, kind, points, remaining, created_at)
SELECT id, CASE WHEN id % 3 = 0 THEN 'expire' ELSE 'spend' END, -(id % 200),
       0, $now::timestamptz - make_interval(days => id % 700)
FROM member WHERE id % 4 = 0;

INSERT INTO survey (member_id, sent_at, score, scored_at)
SELECT id, $now::timestamptz - make_interval(days => id % 365), id % 11,
       $now::timestamptz - make_interval(days => id % 365)
FROM member WHERE id % 20 = 0;

INSERT INTO thread (member_id, status, opened_at, first_response_at, rating, rated_at)
SELECT id, 'closed', $now::timestamptz - make_interval(days => id % 365),
       $now::timestamptz - make_interval(days => id % 365) + make_interval(mins => 5 + id % 300),
       1 + id % 5, $now::timestamptz - make_interval(days => id % 365) + interval '1 day'
FROM member WHERE id % 100 = 0;

INSERT INTO notice (kind, telegram_id, period, seq, created_at)
SELECT CASE WHEN id % 2 = 0 THEN 'birthday' ELSE 'winback' END, telegram_id, 'bench', 0,
       $now::timestamptz - make_interval(days => id % 365)
FROM member WHERE id % 50 = 0;

INSERT INTO broadcast (created_by, status, content, segment, total, scheduled_at, created_at)
VALUES (1, 'done', '{}', '{}', 0, $now::timestamptz - interval '20 days', $now::timestamptz - interval '20 days');

INSERT INTO delivery (broadcast_id, member_id, status, attempts, sent_at)
SELECT (SELECT max(id) FROM broadcast), id, 'sent', 1, $now::timestamptz - interval '20 days'
FROM member WHERE id % 10 = 0
"""


async def fill(server: str, members: int, purchases: int, database: str = DATABASE, now: datetime = NOW) -> str:
    """A fresh database ``database`` filled server-side (generate_series): members and purchases up to ``now``."""
    url = await fresh_pg_database(server, database)
    if url is None:
        raise SystemExit(f"no PostgreSQL answers at {server}")
    await upgrade_async(url)
    connection = await asyncpg.connect(f"postgresql://{server}/{database}")
    started = time.perf_counter()
    for statement in FILL.split(";\n\n"):
        await connection.execute(
            statement.replace("$now", f"'{now.isoformat()}'")
            .replace("$members", str(members))
            .replace("$purchases", str(purchases))
        )
    await connection.execute("VACUUM ANALYZE")
    print(f"filled {members:,} members and {purchases:,} purchases in {time.perf_counter() - started:.0f} s")
    await connection.close()
    return url


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--purchases", type=int, default=5_000_000)
    parser.add_argument("--pg", default="postgres@127.0.0.1:5432")
    parser.add_argument("--reuse", action="store_true", help="keep the database of an earlier run")
    args = parser.parse_args()
    url = (
        f"postgresql+asyncpg://{args.pg}/{DATABASE}"
        if args.reuse
        else await fill(args.pg, args.members, args.purchases)
    )
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    program = load_program()
    try:
        if args.reuse:  # a database filled by an older version may lack the snapshot table
            async with engine.begin() as connection:
                await connection.run_sync(
                    lambda sync: StatsSnapshot.__table__.create(  # type: ignore[attr-defined]
                        sync, checkfirst=True
                    )
                )
        for label in ("7d", "30d", "90d", "12m"):
            period = metrics.parse_period(label, NOW, program.tz)
            assert period is not None
            timings = []
            for _ in range(3):
                started = time.perf_counter()
                board = await metrics.dashboard(sessions, program, period, program.analytics.effect_days)
                timings.append(time.perf_counter() - started)
            async with sessions() as session:
                await metrics.save_snapshot(session, board, NOW)
            started = time.perf_counter()
            async with sessions() as session:
                served = await metrics.fresh_snapshot(session, label, NOW)
            assert served == board
            reading = time.perf_counter() - started
            started = time.perf_counter()
            charts.members_and_purchases(board.trend, program.tz, _labels())
            charts.nps_over_time(board.trend, program.tz, _labels())
            charts.cohort_heat_map(board.cohorts, _labels())
            drawing = time.perf_counter() - started
            print(
                f"/stats {label:>3}: computed {min(timings):.2f} s best, {max(timings):.2f} s worst of 3; "
                f"from the snapshot {reading * 1000:.0f} ms; charts {drawing:.2f} s  "
                f"(members {board.members.total:,}, buyers {board.customers.buyers:,}, "
                f"retention {board.customers.retention_rate or 0:.0%}, churn {board.customers.churn_rate or 0:.0%})"
            )
    finally:
        await engine.dispose()


def _labels() -> charts.Labels:
    return charts.Labels(*(["x"] * 9))


if __name__ == "__main__":
    asyncio.run(main())
