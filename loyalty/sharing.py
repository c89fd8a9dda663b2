"""Points for member content: a link to a public post, a review, a photo. Staff approve each one.

A submission is checked when it is made (the kind pays something, the member is within the per-day and
per-month caps of that kind, a link is a public http(s) address not submitted before by anyone) and paid
when approved. Deciding is a conditional update from "pending", so a second tap or a second moderator
changes nothing, and the credit carries the submission's key, so it is paid at most once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.earning import period_start
from loyalty.ledger import Kind, credit
from loyalty.program import Program
from storage.database import begin_write
from storage.models import Member, Submission

KINDS = ("link", "review", "photo")
REVIEW_MIN, REVIEW_MAX = 20, 2000
LINK_MAX = 512
# Why staff turn content down; the member is told in their language.
REASONS = ("not_public", "not_ours", "duplicate", "quality", "other")


class Status(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Refusal(StrEnum):
    NOT_OFFERED = "not_offered"
    DAILY_CAP = "daily_cap"
    MONTHLY_CAP = "monthly_cap"
    DUPLICATE = "duplicate"
    BAD_LINK = "bad_link"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"


class Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal


# Tracking parameters make one post look like many links.
_TRACKING = ("utm_", "fbclid", "gclid", "igshid", "si", "share_", "spm")


def normalize_link(text: str) -> str | None:
    """A public web address in one canonical form (so the same post cannot be paid twice), or None."""
    text = text.strip()
    if not text or len(text) > LINK_MAX or any(ch.isspace() for ch in text):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower().removeprefix("www.")
    if parts.scheme.lower() not in ("http", "https") or "." not in host or host.endswith(".") or parts.username:
        return None
    if host in ("localhost",) or host.replace(".", "").isdigit():
        return None  # not a public post
    query = urlencode(
        sorted(
            (key, value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if not key.lower().startswith(_TRACKING)
        )
    )
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    link = urlunsplit(("https", netloc, parts.path.rstrip("/") or "", query, ""))
    # Re-encoding can multiply the length of non-ASCII text; what does not fit is no ordinary post link.
    return link if len(link) <= LINK_MAX * 4 else None


def link_hash(link: str) -> str:
    return hashlib.sha256(link.encode()).hexdigest()


def check_review(text: str) -> str:
    text = text.strip()
    if len(text) < REVIEW_MIN:
        raise Refused(Refusal.TOO_SHORT)
    if len(text) > REVIEW_MAX:
        raise Refused(Refusal.TOO_LONG)
    return text


async def can_submit(session: AsyncSession, program: Program, member_id: int, kind: str, now: datetime) -> None:
    """Raises Refused when this member may not submit this kind now; checked again when they submit."""
    rule = program.sharing.kind(kind) if kind in KINDS else None
    if rule is None or not rule.points:
        raise Refused(Refusal.NOT_OFFERED)
    since_month = period_start(now, "month", program)
    since_day = period_start(now, "day", program)
    today, this_month = (
        await session.execute(
            select(
                func.count().filter(col(Submission.created_at) >= since_day),
                func.count(),
            ).where(
                col(Submission.member_id) == member_id,
                col(Submission.kind) == kind,
                col(Submission.created_at) >= since_month,
                # A rejected submission does not use up the member's allowance.
                col(Submission.status) != Status.REJECTED,
            )
        )
    ).one()
    if today >= rule.per_day:
        raise Refused(Refusal.DAILY_CAP)
    if this_month >= rule.per_month:
        raise Refused(Refusal.MONTHLY_CAP)


async def submit(
    session: AsyncSession, program: Program, member_id: int, kind: str, content: str, now: datetime
) -> Submission:
    """Record a submission for review. ``content`` is the link or review as typed, or a photo's file id."""
    digest = None
    if kind == "link":
        link = normalize_link(content)
        if link is None:
            raise Refused(Refusal.BAD_LINK)
        content, digest = link, link_hash(link)
    elif kind == "review":
        content = check_review(content)
    await begin_write(session)
    try:
        await can_submit(session, program, member_id, kind, now)
        if (
            digest is not None
            and (await session.execute(select(func.count()).where(col(Submission.link_hash) == digest))).scalar_one()
        ):
            raise Refused(Refusal.DUPLICATE)
    except Refused:
        await session.rollback()  # release the write lock before the handler answers
        raise
    submission = Submission(member_id=member_id, kind=kind, content=content, link_hash=digest, created_at=now)
    session.add(submission)
    try:
        await session.commit()
    except IntegrityError as exc:
        # The same link raced in from another member at the same moment.
        await session.rollback()
        raise Refused(Refusal.DUPLICATE) from exc
    return submission


@dataclass(frozen=True)
class Decision:
    submission: Submission
    member: Member
    changed: bool  # False: it was decided already; nothing was done
    points: int


async def decide(
    session: AsyncSession,
    program: Program,
    submission_id: int,
    *,
    approve: bool,
    actor_id: int,
    now: datetime,
    reason: str | None = None,
) -> Decision | None:
    """Approve (and pay) or reject (with a reason) a pending submission, once. None if there is none."""
    if not approve and reason not in REASONS:
        raise ValueError(f"unknown reason {reason!r}")
    await begin_write(session)
    submission = await session.get(Submission, submission_id)
    if submission is None:
        await session.rollback()
        return None
    points = program.sharing.kind(submission.kind).points if approve else 0
    changed = (
        await session.execute(
            update(Submission)
            .where(col(Submission.id) == submission_id, col(Submission.status) == Status.PENDING)
            .values(
                status=Status.APPROVED if approve else Status.REJECTED,
                reason=None if approve else reason,
                points=points,
                decided_by=actor_id,
                decided_at=now,
            )
        )
    ).rowcount  # type: ignore[attr-defined]
    if changed and points:
        await credit(
            session,
            submission.member_id,
            points,
            kind=Kind.SHARE,
            now=now,
            expires_at=program.expires_at(now),
            key=f"share:{submission_id}",
        )
    await session.commit()
    await session.refresh(submission)
    member = await session.get(Member, submission.member_id)
    assert member is not None
    return Decision(submission, member, bool(changed), points if changed else 0)
