"""CSV exports of members, purchases and the ledger, streamed from the database into files.

Cells that a spreadsheet would run as a formula (a member can name themselves "=HYPERLINK(...)") are prefixed with
an apostrophe; files are UTF-8 with a byte-order mark so Excel shows Chinese names right.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.profile import birthday_of
from storage.database import begin_snapshot
from storage.models import LedgerEntry, Member, Purchase

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
TELEGRAM_FILE_LIMIT = 45 * 1024 * 1024  # bots may send files up to 50 MB; larger exports go out gzipped


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _money(minor: int | None, digits: int) -> str:
    return "" if minor is None else str(Decimal(minor).scaleb(-digits))


def _birthday(member: Member) -> str:
    birthday = birthday_of(member)
    return "" if birthday is None else str(birthday)


MEMBER_COLUMNS = [
    "id",
    "code",
    "telegram_id",
    "first_name",
    "last_name",
    "username",
    "language",
    "points",
    "lifetime_points",
    "tier",
    "joined_at",
    "last_seen_at",
    "birthday",
    "phone",
    "favourites",
    "promotions",
    "blocked_at",
    "erased_at",
    "referred_by_id",
]
PURCHASE_COLUMNS = [
    "id",
    "member_id",
    "scope",
    "source",
    "external_id",
    "amount",
    "refunded",
    "currency",
    "category",
    "items",
    "points",
    "promotion",
    "recorded_by",
    "occurred_at",
    "created_at",
]
LEDGER_COLUMNS = [
    "id",
    "member_id",
    "kind",
    "points",
    "remaining",
    "expires_at",
    "purchase_id",
    "reason",
    "actor_id",
    "created_at",
]


def _member_row(m: Member, _digits: int) -> list[Any]:
    return [
        m.id,
        m.code,
        m.telegram_id,
        m.first_name,
        m.last_name,
        m.username,
        m.language,
        m.points,
        m.lifetime_points,
        m.tier,
        m.joined_at,
        m.last_seen_at,
        _birthday(m),
        m.phone,
        m.favourites,
        m.promotions,
        m.blocked_at,
        m.erased_at,
        m.referred_by_id,
    ]


def _purchase_row(p: Purchase, digits: int) -> list[Any]:
    return [
        p.id,
        p.member_id,
        p.scope,
        p.source,
        p.external_id,
        _money(p.amount_minor, digits),
        _money(p.refunded_minor, digits),
        p.currency,
        p.category,
        p.items,
        p.points,
        p.promotion,
        p.recorded_by,
        p.occurred_at,
        p.created_at,
    ]


def _ledger_row(e: LedgerEntry, _digits: int) -> list[Any]:
    return [
        e.id,
        e.member_id,
        e.kind,
        e.points,
        e.remaining,
        e.expires_at,
        e.purchase_id,
        e.reason,
        e.actor_id,
        e.created_at,
    ]


EXPORTS: dict[str, tuple[list[str], Select[Any], Callable[[Any, int], list[Any]]]] = {
    "members": (MEMBER_COLUMNS, select(Member).order_by(col(Member.id)), _member_row),
    "purchases": (PURCHASE_COLUMNS, select(Purchase).order_by(col(Purchase.id)), _purchase_row),
    "ledger": (LEDGER_COLUMNS, select(LedgerEntry).order_by(col(LedgerEntry.id)), _ledger_row),
}


async def export_all(session: AsyncSession, directory: Path, currency_digits: int) -> AsyncIterator[tuple[Path, int]]:
    """Each table as of one moment, as soon as its file is written: the file and its rows."""
    await begin_snapshot(session)
    try:
        for name in EXPORTS:
            yield await export(session, name, directory, currency_digits)
    finally:
        await session.rollback()  # read only


async def export(session: AsyncSession, name: str, directory: Path, currency_digits: int) -> tuple[Path, int]:
    """Write one table as ``<name>.csv`` (gzipped when too big for Telegram); returns the file and its rows."""
    columns, statement, row_of = EXPORTS[name]
    path = directory / f"{name}.csv"
    rows = 0
    with path.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        result = await session.stream(statement.execution_options(yield_per=2000))
        async for (row,) in result:
            writer.writerow([_cell(value) for value in row_of(row, currency_digits)])
            rows += 1
    if path.stat().st_size > TELEGRAM_FILE_LIMIT:
        path = await asyncio.to_thread(_gzip, path)  # tens of megabytes: seconds the event loop must not wait
    return path, rows


async def stream_csv(
    session: AsyncSession, name: str, currency_digits: int, rows_per_chunk: int = 2000
) -> AsyncIterator[str]:
    """One table as the CSV text ``export`` writes (byte-order mark, header, rows), in pieces: for a download
    that starts at once and never holds the whole table."""
    columns, statement, row_of = EXPORTS[name]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(columns)
    rows = 0
    await begin_snapshot(session)  # PostgreSQL's server-side cursor needs a transaction
    try:
        result = await session.stream(statement.execution_options(yield_per=2000))
        async for (row,) in result:
            writer.writerow([_cell(value) for value in row_of(row, currency_digits)])
            rows += 1
            if rows % rows_per_chunk == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()
    finally:
        await session.rollback()  # read only


def _gzip(path: Path) -> Path:
    packed = path.with_suffix(".csv.gz")
    with path.open("rb") as source, gzip.open(packed, "wb") as target:
        shutil.copyfileobj(source, target)
    path.unlink()
    return packed
