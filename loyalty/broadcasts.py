"""Broadcasts and their delivery queue.

A broadcast's audience is frozen when it is created: one ``delivery`` row per member, UNIQUE(broadcast, member).
Workers claim batches (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers never take the same rows;
SQLite has one writer anyway) as "claimed", mark each "sending" just before its request goes to Telegram, and
record the outcome. After a crash (a row left behind for ``STALE``), a "claimed" row was never tried and goes back
to "pending"; a row still "sending" may or may not have reached the member, so it becomes "unknown" and is not
sent again unless an admin asks for it (``resend_unknown``). So only the sends in flight when the process died
can be unknown: at 30 messages a second, a handful.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.program import Program
from loyalty.segments import Segment, members
from storage.database import begin_write
from storage.models import Broadcast, Delivery, Member

STALE = timedelta(seconds=60)


class Status(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"  # taken by a sender, not tried yet
    SENDING = "sending"  # its request is (or was, before a crash) on its way to Telegram
    SENT = "sent"
    FAILED = "failed"
    BLOCKED = "blocked"
    UNKNOWN = "unknown"


OPEN = (Status.SCHEDULED, Status.RUNNING, Status.PAUSED)
"""Broadcasts whose pending deliveries are still to be sent."""


async def queued(session: AsyncSession) -> int:
    """Deliveries waiting to be sent, across open broadcasts: an index range per open broadcast (a status
    alone has no index), and a cancelled broadcast's unsent rows are no longer a queue."""
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(Delivery)
                .join(Broadcast, col(Broadcast.id) == col(Delivery.broadcast_id))
                .where(
                    col(Broadcast.status).in_([s.value for s in OPEN]),
                    col(Delivery.status) == Outcome.PENDING.value,
                )
            )
        ).scalar_one()
    )


async def audience(session: AsyncSession, segment: Segment, program: Program, now: datetime) -> dict[str, int]:
    """How many members the segment reaches, by language."""
    rows = (await session.execute(members(segment, program, now))).all()
    counts: dict[str, int] = {}
    for _member_id, language in rows:
        counts[language] = counts.get(language, 0) + 1
    return counts


async def create(
    session: AsyncSession,
    program: Program,
    *,
    created_by: int,
    content: dict[str, Any],
    segment: Segment,
    now: datetime,
    send_at: datetime | None = None,
    status_chat_id: int | None = None,
) -> Broadcast:
    """Store a broadcast and freeze its audience into the delivery queue."""
    await begin_write(session)
    broadcast = Broadcast(
        created_by=created_by,
        content=json.dumps(content, ensure_ascii=False),
        segment=segment.model_dump_json(),
        scheduled_at=send_at or now,
        status=Status.SCHEDULED if send_at else Status.RUNNING,
        started_at=None if send_at else now,
        status_chat_id=status_chat_id,
        created_at=now,
    )
    session.add(broadcast)
    await session.flush()
    audience_ids = members(segment, program, now).with_only_columns(
        literal(broadcast.id), col(Member.id), literal(Outcome.PENDING.value)
    )
    await session.execute(insert(Delivery).from_select(["broadcast_id", "member_id", "status"], audience_ids))
    broadcast.total = (
        await session.execute(
            select(func.count()).select_from(Delivery).where(col(Delivery.broadcast_id) == broadcast.id)
        )
    ).scalar_one()
    session.add(broadcast)
    await session.commit()
    return broadcast


async def set_status_message(session: AsyncSession, broadcast_id: int, chat_id: int, message_id: int) -> None:
    await begin_write(session)
    await session.execute(
        update(Broadcast)
        .where(col(Broadcast.id) == broadcast_id)
        .values(status_chat_id=chat_id, status_message_id=message_id)
    )
    await session.commit()


async def start_due(session: AsyncSession, now: datetime) -> None:
    """Scheduled broadcasts whose time has come start running."""
    await begin_write(session)
    await session.execute(
        update(Broadcast)
        .where(
            col(Broadcast.status) == Status.SCHEDULED,
            col(Broadcast.scheduled_at) <= now,
        )
        .values(status=Status.RUNNING, started_at=now)
    )
    await session.commit()


async def running(session: AsyncSession) -> list[Broadcast]:
    return list(
        (
            await session.execute(
                select(Broadcast).where(col(Broadcast.status) == Status.RUNNING).order_by(col(Broadcast.id))
            )
        ).scalars()
    )


async def get(session: AsyncSession, broadcast_id: int) -> Broadcast | None:
    return await session.get(Broadcast, broadcast_id, populate_existing=True)


async def change(session: AsyncSession, broadcast_id: int, to: Status, now: datetime) -> bool:
    """Pause, resume or cancel; False when the broadcast is not in a state that allows it."""
    allowed = {
        Status.PAUSED: (Status.RUNNING, Status.SCHEDULED),
        Status.RUNNING: (Status.PAUSED,),
        Status.CANCELLED: (Status.RUNNING, Status.PAUSED, Status.SCHEDULED),
    }[to]
    await begin_write(session)
    values: dict[str, Any] = {"status": to}
    if to is Status.CANCELLED:
        values["finished_at"] = now
    changed = (
        await session.execute(
            update(Broadcast)
            .where(col(Broadcast.id) == broadcast_id, col(Broadcast.status).in_([s.value for s in allowed]))
            .values(**values)
        )
    ).rowcount  # type: ignore[attr-defined]
    await session.commit()
    return bool(changed)


@dataclass(frozen=True)
class Item:
    delivery_id: int
    member_id: int
    chat_id: int
    language: str
    attempts: int


async def claim(session: AsyncSession, broadcast_id: int, now: datetime, size: int) -> list[Item]:
    """Take up to ``size`` pending rows of a running broadcast for sending. Rows a crashed sender left behind:
    those it had claimed go back to the queue, those it was sending become unknown."""
    await begin_write(session)
    for left, becomes in ((Outcome.SENDING, Outcome.UNKNOWN), (Outcome.CLAIMED, Outcome.PENDING)):
        await session.execute(
            update(Delivery)
            .where(
                col(Delivery.broadcast_id) == broadcast_id,
                col(Delivery.status) == left,
                col(Delivery.claimed_at) < now - STALE,
            )
            .values(status=becomes)
        )
    ids = list(
        (
            await session.execute(
                select(col(Delivery.id))
                .where(col(Delivery.broadcast_id) == broadcast_id, col(Delivery.status) == Outcome.PENDING)
                .order_by(col(Delivery.id))
                .limit(size)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    if not ids:
        await session.commit()
        return []
    await session.execute(
        update(Delivery).where(col(Delivery.id).in_(ids)).values(status=Outcome.CLAIMED, claimed_at=now)
    )
    rows = (
        await session.execute(
            select(col(Delivery.id), col(Member.id), col(Member.chat_id), col(Member.language), col(Delivery.attempts))
            .join(Member, col(Member.id) == col(Delivery.member_id))
            .where(col(Delivery.id).in_(ids))
            .order_by(col(Delivery.id))
        )
    ).all()
    await session.commit()
    return [Item(int(d or 0), int(m or 0), int(c), str(lang), int(a)) for d, m, c, lang, a in rows]


async def mark_sending(session: AsyncSession, items: Sequence[Item], now: datetime) -> None:
    """Claimed rows whose requests go to Telegram now: committed before they are sent, so a crash leaves only
    these "unknown"."""
    if not items:
        return
    await begin_write(session)
    await session.execute(
        update(Delivery)
        .where(col(Delivery.id).in_([item.delivery_id for item in items]), col(Delivery.status) == Outcome.CLAIMED)
        .values(status=Outcome.SENDING, claimed_at=now, attempts=col(Delivery.attempts) + 1)
    )
    await session.commit()


async def resend_unknown(session: AsyncSession, broadcast_id: int, now: datetime) -> int:
    """The admin's choice after a crash: send to the members whose copy is unknown too (they may get it twice).
    Their rows go back to the queue and a finished broadcast runs again; returns how many."""
    await begin_write(session)
    count = (
        await session.execute(
            update(Delivery)
            .where(col(Delivery.broadcast_id) == broadcast_id, col(Delivery.status) == Outcome.UNKNOWN)
            .values(status=Outcome.PENDING, claimed_at=None)
        )
    ).rowcount  # type: ignore[attr-defined]
    if count:
        await session.execute(
            update(Broadcast)
            .where(col(Broadcast.id) == broadcast_id, col(Broadcast.status) == Status.DONE)
            .values(status=Status.RUNNING, finished_at=None)
        )
    await session.commit()
    return int(count)


@dataclass(frozen=True)
class Result:
    item: Item
    outcome: Outcome
    message_id: int | None = None
    error: str | None = None


async def record(session: AsyncSession, results: Sequence[Result], now: datetime) -> None:
    """The outcomes of a run of sends, in one transaction. Only rows still "sending" change (a late result
    after the row was declared unknown does not); members who blocked the bot are marked so."""
    if not results:
        return
    await begin_write(session)
    table = cast(Table, Delivery.__table__)  # type: ignore[attr-defined]  # SQLModel sets it at class creation
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("row"),
            table.c.status == Outcome.SENDING.value,
        )
        .values(
            status=bindparam("outcome"),
            message_id=bindparam("message"),
            error=bindparam("reason"),
            sent_at=bindparam("when"),
        )
    )
    await (await session.connection()).execute(
        statement,
        [
            {
                "row": r.item.delivery_id,
                "outcome": r.outcome.value,
                "message": r.message_id,
                "reason": r.error[:200] if r.error else None,
                "when": now if r.outcome is Outcome.SENT else None,
            }
            for r in results
        ],
    )
    blocked = [r.item.member_id for r in results if r.outcome is Outcome.BLOCKED]
    if blocked:
        await session.execute(
            update(Member).where(col(Member.id).in_(blocked), col(Member.blocked_at).is_(None)).values(blocked_at=now)
        )
    await session.commit()


async def release(session: AsyncSession, items: Sequence[Item]) -> None:
    """Claimed rows that were never sent (the sender stopped first) go back to the queue."""
    if not items:
        return
    await begin_write(session)
    await session.execute(
        update(Delivery)
        .where(
            col(Delivery.id).in_([item.delivery_id for item in items]),
            col(Delivery.status) == Outcome.CLAIMED,
        )
        .values(status=Outcome.PENDING, claimed_at=None)
    )
    await session.commit()


async def status_of(session: AsyncSession, broadcast_id: int) -> str | None:
    return (
        await session.execute(select(col(Broadcast.status)).where(col(Broadcast.id) == broadcast_id))
    ).scalar_one_or_none()


@dataclass(frozen=True)
class Progress:
    total: int
    counts: dict[str, int]

    def of(self, outcome: Outcome) -> int:
        return self.counts.get(outcome.value, 0)

    @property
    def remaining(self) -> int:
        return self.of(Outcome.PENDING) + self.of(Outcome.CLAIMED) + self.of(Outcome.SENDING)


async def progress(session: AsyncSession, broadcast_id: int) -> Progress:
    return (await progress_of(session, [broadcast_id]))[broadcast_id]


async def progress_of(session: AsyncSession, broadcast_ids: list[int]) -> dict[int, Progress]:
    """Delivery counts by outcome for several broadcasts, in one query."""
    rows = (
        await session.execute(
            select(col(Delivery.broadcast_id), col(Delivery.status), func.count())
            .where(col(Delivery.broadcast_id).in_(broadcast_ids))
            .group_by(col(Delivery.broadcast_id), col(Delivery.status))
        )
    ).all()
    counts: dict[int, dict[str, int]] = {broadcast_id: {} for broadcast_id in broadcast_ids}
    for broadcast_id, status, count in rows:
        counts[int(broadcast_id)][str(status)] = int(count)
    return {broadcast_id: Progress(sum(c.values()), c) for broadcast_id, c in counts.items()}


async def finish(session: AsyncSession, broadcast_id: int, now: datetime) -> bool:
    """Mark a running broadcast done once nothing is left to send; True if this call finished it."""
    await begin_write(session)
    left = (
        await session.execute(
            select(func.count())
            .select_from(Delivery)
            .where(
                col(Delivery.broadcast_id) == broadcast_id,
                col(Delivery.status).in_([Outcome.PENDING.value, Outcome.CLAIMED.value, Outcome.SENDING.value]),
            )
        )
    ).scalar_one()
    done = 0
    if not left:
        done = (
            await session.execute(
                update(Broadcast)
                .where(
                    col(Broadcast.id) == broadcast_id,
                    col(Broadcast.status) == Status.RUNNING,
                )
                .values(status=Status.DONE, finished_at=now)
            )
        ).rowcount  # type: ignore[attr-defined]
    await session.commit()
    return bool(done)


async def recent(session: AsyncSession, limit: int = 10) -> list[tuple[Broadcast, Progress]]:
    broadcasts = list(
        (await session.execute(select(Broadcast).order_by(col(Broadcast.id).desc()).limit(limit))).scalars()
    )
    progresses = await progress_of(session, [b.id or 0 for b in broadcasts])
    return [(b, progresses[b.id or 0]) for b in broadcasts]
