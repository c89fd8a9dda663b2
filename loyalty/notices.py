"""Claims on scheduled messages: whoever inserts the notice row sends the message, exactly once.

A claim is committed before sending; if Telegram fails in a way worth retrying, the claim is released so the
next run tries again. Two schedulers racing for the same message both try to insert; UNIQUE lets one win.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from storage.database import begin_write, insert_once
from storage.models import Notice


async def claim(session: AsyncSession, kind: str, telegram_id: int, period: str, now: datetime, seq: int = 0) -> bool:
    await begin_write(session)
    won = await insert_once(session, Notice, kind=kind, telegram_id=telegram_id, period=period, seq=seq, created_at=now)
    await session.commit()
    return won


async def release(session: AsyncSession, kind: str, telegram_id: int, period: str, seq: int = 0) -> None:
    await begin_write(session)
    await session.execute(
        delete(Notice).where(
            col(Notice.kind) == kind,
            col(Notice.telegram_id) == telegram_id,
            col(Notice.period) == period,
            col(Notice.seq) == seq,
        )
    )
    await session.commit()


def sent(kind: str, telegram_id: Any, period: Any) -> ColumnElement[bool]:
    """SQL: this notice was claimed already (an index lookup on the UNIQUE key), for due-work selections."""
    return exists(
        select(col(Notice.id)).where(
            col(Notice.kind) == kind, col(Notice.telegram_id) == telegram_id, col(Notice.period) == period
        )
    )
