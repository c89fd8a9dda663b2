"""Feedback threads between a member and the support desk, with response times and satisfaction ratings.

A member has at most one open thread. Writing while none is open opens a new one (in a forum it goes to the
member's own topic, reopened, so the conversation keeps its place in the staff chat). Every message is stored
once: its source message is a UNIQUE key, so a redelivered update relays nothing twice. ``waiting_since`` is
the first member message staff have not answered yet; it drives the inbox order and the overdue report, which
is made once per wait.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty import stores
from loyalty.nps import last_score
from storage.database import begin_write, insert_once
from storage.models import Coupon, Member, Purchase, StaffPost, Thread, ThreadMessage

PREVIEW = 80
# A member writing this soon after their thread was closed is still talking to support: it reopens.
REOPEN_WINDOW = timedelta(days=7)


class Status(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Direction(StrEnum):
    IN = "in"  # from the member
    OUT = "out"  # from staff


@dataclass(frozen=True)
class Received:
    thread: Thread
    message: ThreadMessage | None  # None: a replay of a message already stored
    opened: bool  # this message opened (or reopened) the thread
    reopened: bool = False  # ... within REOPEN_WINDOW of the member's last thread closing: the same conversation


# A member's short thanks after a thread was closed and rated ends the conversation; it does not start another.
THANKS = re.compile(
    r"^\W*(thanks?( you)?( so much| a lot)?|thx|ty|ok(ay)?|great|perfect|谢谢|謝謝|多谢|多謝|感谢|感謝|好的)\W*$",
    re.IGNORECASE,
)


async def just_thanks(session: AsyncSession, member_id: int, text: str | None) -> bool:
    """Whether the message only thanks staff for a thread already closed and rated (nothing to open one for)."""
    if not text or len(text) > 40 or not THANKS.match(text.strip()):
        return False
    if await open_thread_of(session, member_id) is not None:
        return False
    last = await latest_thread_of(session, member_id)
    return last is not None and last.rating is not None


async def member_of(session: AsyncSession, thread: Thread) -> Member:
    member = await session.get(Member, thread.member_id)
    assert member is not None  # threads are never deleted; erased members keep their row
    return member


async def open_thread_of(session: AsyncSession, member_id: int) -> Thread | None:
    return (
        await session.execute(
            select(Thread).where(col(Thread.member_id) == member_id, col(Thread.status) == Status.OPEN)
        )
    ).scalar_one_or_none()


async def continues_thread(session: AsyncSession, member_id: int, now: datetime) -> bool:
    """Whether a member's free text belongs to a thread: one is open, or was closed within REOPEN_WINDOW."""
    thread = await latest_thread_of(session, member_id)
    if thread is None:
        return False
    return thread.status == Status.OPEN or (thread.closed_at is not None and now - thread.closed_at < REOPEN_WINDOW)


async def latest_thread_of(session: AsyncSession, member_id: int) -> Thread | None:
    return (
        await session.execute(
            select(Thread).where(col(Thread.member_id) == member_id).order_by(col(Thread.id).desc()).limit(1)
        )
    ).scalar_one_or_none()


async def member_says(
    session: AsyncSession,
    member_id: int,
    *,
    source_key: str,
    kind: str,
    text: str | None,
    file_id: str | None,
    now: datetime,
    score: int | None = None,
) -> Received:
    """Store a member's message in their thread, opening or reopening it as needed."""
    await begin_write(session)
    if (seen := await _by_source(session, source_key)) is not None:
        thread = await session.get(Thread, seen.thread_id)
        assert thread is not None
        await session.rollback()
        return Received(thread, None, opened=False)
    # Messages of one album arrive together: the member's row serialises them, so one thread opens.
    await session.execute(select(col(Member.id)).where(col(Member.id) == member_id).with_for_update())
    thread = await open_thread_of(session, member_id)
    opened, reopened = thread is None, False
    if thread is None:
        last = await latest_thread_of(session, member_id)
        reopened = last is not None and last.closed_at is not None and now - last.closed_at < REOPEN_WINDOW
        # Writing after a close starts a new thread (its own response time and rating); in a forum it
        # reopens the member's topic, so to staff it is the same conversation continued.
        thread = Thread(member_id=member_id, opened_at=now)
    if thread.waiting_since is None:
        thread.waiting_since, thread.overdue_reported_at = now, None
    session.add(thread)
    await session.flush()
    assert thread.id is not None
    message = ThreadMessage(
        thread_id=thread.id,
        direction=Direction.IN,
        kind=kind,
        text=text,
        file_id=file_id,
        source_key=source_key,
        created_at=now,
        score=score,
    )
    session.add(message)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()  # the same update again: it was relayed already
        replayed = await latest_thread_of(session, member_id)
        assert replayed is not None
        return Received(replayed, None, opened=False)
    return Received(thread, message, opened, reopened)


async def _by_source(session: AsyncSession, source_key: str) -> ThreadMessage | None:
    return (
        await session.execute(select(ThreadMessage).where(col(ThreadMessage.source_key) == source_key))
    ).scalar_one_or_none()


async def staff_says(
    session: AsyncSession,
    thread_id: int,
    *,
    source_key: str,
    kind: str,
    text: str | None,
    author_id: int,
    now: datetime,
) -> ThreadMessage | None:
    """Store a staff answer; the first one sets the thread's first-response time. None for a replay."""
    await begin_write(session)
    thread = await session.get(Thread, thread_id, populate_existing=True)
    if thread is None:
        raise LookupError(thread_id)
    message = ThreadMessage(
        thread_id=thread_id,
        direction=Direction.OUT,
        kind=kind,
        text=text,
        author_id=author_id,
        source_key=source_key,
        created_at=now,
    )
    session.add(message)
    if thread.first_response_at is None:
        thread.first_response_at = now
    thread.waiting_since = None
    session.add(thread)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return None
    return message


async def remember_post(session: AsyncSession, thread_id: int, chat_id: int, message_id: int) -> None:
    """Remember a message posted in the staff chat for a thread, so a reply to it there finds the thread."""
    await begin_write(session)
    await insert_once(session, StaffPost, chat_id=chat_id, message_id=message_id, thread_id=thread_id)
    await session.commit()


async def thread_by_staff_post(session: AsyncSession, chat_id: int, message_id: int) -> Thread | None:
    return (
        await session.execute(
            select(Thread)
            .join(StaffPost, col(StaffPost.thread_id) == col(Thread.id))
            .where(col(StaffPost.chat_id) == chat_id, col(StaffPost.message_id) == message_id)
        )
    ).scalar_one_or_none()


async def thread_by_topic(session: AsyncSession, topic_id: int) -> Thread | None:
    member_id = (
        await session.execute(select(col(Member.id)).where(col(Member.support_topic_id) == topic_id))
    ).scalar_one_or_none()
    return await latest_thread_of(session, member_id) if member_id is not None else None


async def set_topic(session: AsyncSession, member_id: int, topic_id: int) -> int:
    """Give the member this forum topic unless a concurrent message gave them one first; returns theirs."""
    await begin_write(session)
    await session.execute(
        update(Member)
        .where(col(Member.id) == member_id, col(Member.support_topic_id).is_(None))
        .values(support_topic_id=topic_id)
    )
    theirs = (await session.execute(select(col(Member.support_topic_id)).where(col(Member.id) == member_id))).scalar()
    await session.commit()
    assert theirs is not None
    return int(theirs)


async def close(session: AsyncSession, thread_id: int, now: datetime) -> bool:
    """Close an open thread; False if it was closed already (a repeated /close)."""
    await begin_write(session)
    closed = (
        await session.execute(
            update(Thread)
            .where(col(Thread.id) == thread_id, col(Thread.status) == Status.OPEN)
            .values(status=Status.CLOSED, closed_at=now, waiting_since=None)
        )
    ).rowcount  # type: ignore[attr-defined]
    await session.commit()
    return bool(closed)


async def rate(session: AsyncSession, thread_id: int, member_id: int, rating: int, now: datetime) -> bool:
    """The member's 1–5 rating of a closed thread, once; False for a repeat or someone else's thread."""
    if not 1 <= rating <= 5:
        raise ValueError("a rating is 1 to 5")
    await begin_write(session)
    rated = (
        await session.execute(
            update(Thread)
            .where(
                col(Thread.id) == thread_id,
                col(Thread.member_id) == member_id,
                col(Thread.rating).is_(None),
                col(Thread.status) == Status.CLOSED,
            )
            .values(rating=rating, rated_at=now)
        )
    ).rowcount  # type: ignore[attr-defined]
    await session.commit()
    return bool(rated)


@dataclass(frozen=True)
class InboxLine:
    thread: Thread
    member: Member
    last: ThreadMessage | None
    overdue: bool


async def inbox(session: AsyncSession, now: datetime, target: timedelta) -> list[InboxLine]:
    """Open threads: those waiting for an answer first, longest wait first; then the answered ones."""
    rows = (
        await session.execute(
            select(Thread, Member)
            .join(Member, col(Member.id) == col(Thread.member_id))
            .where(col(Thread.status) == Status.OPEN)
            .order_by(col(Thread.waiting_since).is_(None), col(Thread.waiting_since), col(Thread.opened_at))
        )
    ).all()
    lines = []
    for thread, member in rows:
        last = (
            await session.execute(
                select(ThreadMessage)
                .where(col(ThreadMessage.thread_id) == thread.id)
                .order_by(col(ThreadMessage.id).desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        overdue = thread.waiting_since is not None and now - thread.waiting_since > target
        lines.append(InboxLine(thread, member, last, overdue))
    return lines


def overdue_statement(now: datetime, target: timedelta) -> Select[Thread, Member]:
    return (
        select(Thread, Member)
        .join(Member, col(Member.id) == col(Thread.member_id))
        .where(
            col(Thread.status) == Status.OPEN,
            col(Thread.waiting_since) < now - target,
            col(Thread.overdue_reported_at).is_(None),
        )
        .order_by(col(Thread.waiting_since))
    )


async def take_overdue(session: AsyncSession, now: datetime, target: timedelta) -> list[tuple[Thread, Member]]:
    """Threads waiting longer than the target and not reported yet in this wait; marks them reported."""
    await begin_write(session)
    rows = (await session.execute(overdue_statement(now, target).with_for_update(of=Thread))).all()
    for thread, _member in rows:
        thread.overdue_reported_at = now
        session.add(thread)
    await session.commit()
    return [(thread, member) for thread, member in rows]


async def get_thread(session: AsyncSession, thread_id: int) -> tuple[Thread, Member] | None:
    row = (
        await session.execute(
            select(Thread, Member)
            .join(Member, col(Member.id) == col(Thread.member_id))
            .where(col(Thread.id) == thread_id)
        )
    ).first()
    return (row[0], row[1]) if row else None


async def messages_of(session: AsyncSession, thread_id: int, limit: int) -> tuple[list[ThreadMessage], int]:
    """The thread's latest ``limit`` messages, oldest first, and how many there are in all."""
    total = (await session.execute(select(func.count()).where(col(ThreadMessage.thread_id) == thread_id))).scalar_one()
    latest = (
        await session.execute(
            select(ThreadMessage)
            .where(col(ThreadMessage.thread_id) == thread_id)
            .order_by(col(ThreadMessage.id).desc())
            .limit(limit)
        )
    ).scalars()
    return list(reversed(list(latest))), int(total)


@dataclass(frozen=True)
class MemberFacts:
    """What support sees about a member when a thread opens."""

    member: Member
    last_purchase: Purchase | None
    open_coupons: int
    nps: int | None
    usual_store: str | None = None  # the [[stores]] key they buy at most


async def facts(session: AsyncSession, member_id: int, now: datetime) -> MemberFacts:
    member = await session.get(Member, member_id, populate_existing=True)
    if member is None:
        raise LookupError(member_id)
    last_purchase = (
        await session.execute(
            select(Purchase)
            .where(col(Purchase.member_id) == member_id)
            .order_by(col(Purchase.created_at).desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    coupons = (
        await session.execute(
            select(func.count())
            .select_from(Coupon)
            .where(
                col(Coupon.member_id) == member_id,
                col(Coupon.used_at).is_(None),
                col(Coupon.expires_at) > now,
            )
        )
    ).scalar_one()
    usual = await stores.usual_store(session, member_id)
    return MemberFacts(member, last_purchase, int(coupons), await last_score(session, member_id), usual)


async def tag_store(session: AsyncSession, thread_id: int, store: str | None) -> bool:
    """Tag a thread with the store it is about (None: untag); whether the thread exists. The caller checks the
    key against the program (``loyalty.stores.checked``)."""
    await begin_write(session)
    thread = await session.get(Thread, thread_id)
    if thread is None:
        await session.rollback()
        return False
    thread.store = store
    session.add(thread)
    await session.commit()
    return True
