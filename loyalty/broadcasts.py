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

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, delete, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.holdouts import draw_all
from loyalty.program import Program
from loyalty.segments import Segment, members
from storage.database import begin_write
from storage.models import AuditLog, Broadcast, Delivery, Member

STALE = timedelta(seconds=60)
PACE_WINDOW = timedelta(seconds=20)


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


# ------------------------------------------------------------------------------------------------ composing
# A broadcast's content is JSON: {"default": variant, "zh-Hans": variant, ...}, a variant being
# {"text": Telegram HTML, "photo": file_id (optional), "button": {"text", "url"} (optional)}. The chat's /broadcast
# and the console both build variants here, so a message composed in either reaches members the same way.

MAX_TEXT = 4096  # Telegram's limits on what members read (tags aside), in UTF-16 code units
MAX_CAPTION = 1024
MAX_BUTTON_TEXT = 40
MAX_URL = 2048
BUTTON_URL = re.compile(r"^https?://[^\s<>\"]+$", re.IGNORECASE)
# Telegram's HTML subset: each tag with the attributes it may carry.
TAGS: dict[str, tuple[str, ...]] = {
    "b": (),
    "strong": (),
    "i": (),
    "em": (),
    "u": (),
    "ins": (),
    "s": (),
    "strike": (),
    "del": (),
    "tg-spoiler": (),
    "span": ("class",),
    "a": ("href",),
    "code": ("class",),
    "pre": (),
    "blockquote": ("expandable",),
    "tg-emoji": ("emoji-id",),
}
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)([^<>]*)>")
_TAG_LIKE = re.compile(r"</?[A-Za-z]")
_ATTRIBUTE = re.compile(r"""\s*([A-Za-z-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_SPECIAL = re.compile(r"[<>&]")
_LINK = re.compile(r"^(https?|tg|mailto):\S+$", re.IGNORECASE)  # what Telegram opens; never javascript:


class ContentProblem(StrEnum):
    EMPTY = "empty"  # neither text nor photo
    TOO_LONG = "too_long"  # ``limit`` says how long it may be
    BAD_TAG = "bad_tag"  # ``word``: formatting Telegram does not take, or a tag closed out of order
    UNCLOSED = "unclosed"  # ``word``: a tag never closed
    BAD_BUTTON = "bad_button"  # the button's label: empty or longer than MAX_BUTTON_TEXT
    BAD_LINK = "bad_link"  # the button's link: not an http(s) address


class BadContent(ValueError):
    def __init__(self, problem: ContentProblem, word: str = "", limit: int = 0) -> None:
        super().__init__(f"{problem.value}: {word}")
        self.problem, self.word, self.limit = problem, word, limit


def _length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _open_tag(name: str, rest: str, written: str) -> str:
    attributes: dict[str, str] = {}
    position = 0
    rest = rest.rstrip()
    while position < len(rest):
        found = _ATTRIBUTE.match(rest, position)
        if found is None or found.end() == position:
            raise BadContent(ContentProblem.BAD_TAG, written)
        key = found[1].lower()
        if key not in TAGS[name]:
            raise BadContent(ContentProblem.BAD_TAG, written)
        attributes[key] = html.unescape(next((v for v in found.groups()[1:] if v is not None), ""))
        position = found.end()
    if name == "a" and not _LINK.match(attributes.get("href", "")):
        raise BadContent(ContentProblem.BAD_TAG, written)
    if name == "span" and attributes.get("class") != "tg-spoiler":
        raise BadContent(ContentProblem.BAD_TAG, written)
    shown = "".join(
        f" {key}" if key == "expandable" else f' {key}="{html.escape(value, quote=True)}"'
        for key, value in attributes.items()
    )
    return f"<{name}{shown}>"


def formatted(text: str) -> tuple[str, int]:
    """Telegram HTML from what an admin wrote: the subset's tags kept (checked and balanced), a stray ``<``, ``>``
    or ``&`` escaped as text. Returns the HTML and the length of the text members read."""
    out: list[str] = []
    plain: list[str] = []
    stack: list[str] = []
    position = 0
    for special in _SPECIAL.finditer(text):
        start = special.start()
        if start < position:
            continue
        out.append(text[position:start])
        plain.append(text[position:start])
        position = start + 1
        char = special[0]
        if char == "&":
            if entity := _ENTITY.match(text, start):
                out.append(entity[0])
                plain.append(html.unescape(entity[0]))
                position = entity.end()
            else:
                out.append("&amp;")
                plain.append("&")
        elif char == ">":
            out.append("&gt;")
            plain.append(">")
        elif tag := _TAG.match(text, start):
            closing, name, rest = tag[1], tag[2].lower(), tag[3]
            if name not in TAGS:
                raise BadContent(ContentProblem.BAD_TAG, tag[0])
            if closing:
                if rest.strip() or not stack or stack[-1] != name:
                    raise BadContent(ContentProblem.BAD_TAG, tag[0])
                stack.pop()
                out.append(f"</{name}>")
            else:
                out.append(_open_tag(name, rest, tag[0]))
                stack.append(name)
            position = tag.end()
        elif _TAG_LIKE.match(text, start):
            raise BadContent(ContentProblem.BAD_TAG, text[start : start + 20])
        else:
            out.append("&lt;")
            plain.append("<")
    out.append(text[position:])
    plain.append(text[position:])
    if stack:
        raise BadContent(ContentProblem.UNCLOSED, f"<{stack[-1]}>")
    return "".join(out), _length("".join(plain).strip())


def button_of(text: str, url: str) -> dict[str, str]:
    label, link = " ".join(text.split()), url.strip()
    if not label or len(label) > MAX_BUTTON_TEXT or not label.isprintable():
        raise BadContent(ContentProblem.BAD_BUTTON, label, MAX_BUTTON_TEXT)
    if len(link) > MAX_URL or not BUTTON_URL.match(link):
        raise BadContent(ContentProblem.BAD_LINK, link)
    return {"text": label, "url": link}


def variant_of(text: str, *, photo: str | None = None, button: dict[str, str] | None = None) -> dict[str, Any]:
    """One language's version as it is stored and sent: checked formatting, a photo (its Telegram file_id), a link
    button."""
    body, length = formatted(text.strip())
    if not length and not photo:
        raise BadContent(ContentProblem.EMPTY)
    limit = MAX_CAPTION if photo else MAX_TEXT
    if length > limit:
        raise BadContent(ContentProblem.TOO_LONG, limit=limit)
    result: dict[str, Any] = {"text": body if length else ""}
    if photo:
        result["photo"] = photo
    if button:
        result["button"] = button_of(button["text"], button["url"])
    return result


class TimeProblem(StrEnum):
    FORMAT = "format"
    PASSED = "passed"


class BadTime(ValueError):
    def __init__(self, problem: TimeProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def send_time(text: str, tz: ZoneInfo, now: datetime) -> datetime:
    """When to send, from the local time an admin gave (YYYY-MM-DD HH:MM, or the form's YYYY-MM-DDTHH:MM) in the
    program's timezone; it must be in the future."""
    try:
        local = datetime.strptime(text.strip().replace("T", " ", 1), "%Y-%m-%d %H:%M").replace(tzinfo=tz)
    except ValueError as exc:
        raise BadTime(TimeProblem.FORMAT) from exc
    if local <= now:
        raise BadTime(TimeProblem.PASSED)
    return local


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
    key: str | None = None,
    holdout: float = 0,
) -> Broadcast:
    """Store a broadcast and freeze its audience into the delivery queue; audited. With a ``key``, the same request
    again (a double tap, a retry) finds the first broadcast and changes nothing. With a ``holdout`` share, that
    random share of the audience is drawn now and gets no delivery row: it is never sent (``loyalty.holdouts``)."""
    await begin_write(session)
    if key is not None and (done := await by_key(session, key)) is not None:
        await session.commit()
        return done
    broadcast = Broadcast(
        created_by=created_by,
        content=json.dumps(content, ensure_ascii=False),
        segment=segment.model_dump_json(),
        scheduled_at=send_at or now,
        status=Status.SCHEDULED if send_at else Status.RUNNING,
        started_at=None if send_at else now,
        status_chat_id=status_chat_id,
        created_at=now,
        key=key,
        holdout=holdout,
    )
    session.add(broadcast)
    try:
        await session.flush()
    except IntegrityError:  # the same key, created a moment ago by another request
        await session.rollback()
        if key is None or (done := await by_key(session, key)) is None:
            raise
        return done
    audience_ids = members(segment, program, now).with_only_columns(
        literal(broadcast.id), col(Member.id), literal(Outcome.PENDING.value)
    )
    await session.execute(insert(Delivery).from_select(["broadcast_id", "member_id", "status"], audience_ids))
    if holdout > 0:
        await _hold_out(session, program, broadcast, holdout, starts_at=send_at or now, now=now)
    broadcast.total = (
        await session.execute(
            select(func.count()).select_from(Delivery).where(col(Delivery.broadcast_id) == broadcast.id)
        )
    ).scalar_one()
    session.add(broadcast)
    when = f", scheduled for {send_at.isoformat(timespec='minutes')}" if send_at else ""
    when += f", holdout {holdout:.0%}" if holdout else ""
    filters = segment.model_dump_json(exclude_defaults=True)
    session.add(
        AuditLog(
            actor_id=created_by,
            action="broadcast",
            detail=f"#{broadcast.id} to {broadcast.total} members{when}; {filters}"[:512],
            created_at=now,
        )
    )
    await session.commit()
    return broadcast


async def _hold_out(
    session: AsyncSession, program: Program, broadcast: Broadcast, share: float, *, starts_at: datetime, now: datetime
) -> None:
    """Draw the frozen audience (its delivery rows) into recipients and holdout, and take the holdout's rows out of
    the queue, in the creating transaction: the holdout is decided before the first message goes."""
    audience_ids = (
        await session.execute(select(col(Delivery.member_id)).where(col(Delivery.broadcast_id) == broadcast.id))
    ).scalars()
    held = sorted(
        await draw_all(
            session, program, "broadcast", str(broadcast.id), list(audience_ids), share, starts_at=starts_at, now=now
        )
    )
    for start in range(0, len(held), 1000):
        await session.execute(
            delete(Delivery).where(
                col(Delivery.broadcast_id) == broadcast.id, col(Delivery.member_id).in_(held[start : start + 1000])
            )
        )


async def by_key(session: AsyncSession, key: str) -> Broadcast | None:
    return (await session.execute(select(Broadcast).where(col(Broadcast.key) == key))).scalar_one_or_none()


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


CHANGES = {
    Status.PAUSED: "broadcast_pause",
    Status.RUNNING: "broadcast_resume",
    Status.CANCELLED: "broadcast_cancel",
}


async def change(session: AsyncSession, broadcast_id: int, to: Status, now: datetime, *, actor_id: int) -> bool:
    """Pause, resume or cancel, audited; False (and nothing changed) when the broadcast is not in a state that
    allows it."""
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
    if changed:
        session.add(AuditLog(actor_id=actor_id, action=CHANGES[to], detail=f"#{broadcast_id}", created_at=now))
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


async def pace(session: AsyncSession, broadcast: Broadcast, now: datetime, window: timedelta = PACE_WINDOW) -> float:
    """Messages a second lately: those sent in the last ``window`` (or since it started, if later)."""
    since = max(now - window, broadcast.started_at or now - window)
    seconds = max((now - since).total_seconds(), 1.0)
    sent = (
        await session.execute(
            select(func.count())
            .select_from(Delivery)
            .where(col(Delivery.broadcast_id) == broadcast.id, col(Delivery.sent_at) >= since)
        )
    ).scalar_one()
    return int(sent) / seconds


async def recent(session: AsyncSession, limit: int = 10) -> list[tuple[Broadcast, Progress]]:
    broadcasts = list(
        (await session.execute(select(Broadcast).order_by(col(Broadcast.id).desc()).limit(limit))).scalars()
    )
    progresses = await progress_of(session, [b.id or 0 for b in broadcasts])
    return [(b, progresses[b.id or 0]) for b in broadcasts]
