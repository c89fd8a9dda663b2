"""Randomized holdouts: a campaign that keeps one leaves a stable random share of its eligible members out, decided
and stored (``HoldoutDraw``) when its audience is fixed, before anything is sent, so the effect report
(``loyalty.metrics.lifts``) compares what happened to members drawn by the same coin.

The coin is a hash of the campaign and the member, not a random generator: a re-run (a retry, a second scheduler,
a crash between drawing and sending) decides the same, and the stored row settles it anyway (UNIQUE). Members
held out are never told and get no message, bonus or coupon. With ``[analytics] holdout_rotates`` a member held out
in their previous draw of a kind is not held out in the next one of that kind."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from loyalty.program import HOLDOUT_MAX, Program
from storage.database import insert_once
from storage.models import HoldoutDraw

KINDS = ("birthday", "winback", "broadcast")
_BATCH = 5000  # rows per INSERT when a broadcast draws its whole audience


def coin(kind: str, campaign: str, member_id: int, share: float) -> bool:
    """The seeded draw: True (held out) for a stable ``share`` of members, independently per campaign."""
    digest = hashlib.sha256(f"{kind}:{campaign}:{member_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


async def _held_out_last_time(session: AsyncSession, kind: str, member_id: int | None = None) -> set[int]:
    """Members (or the one member) whose latest draw of this kind put them in the holdout."""
    latest = select(func.max(col(HoldoutDraw.id))).where(col(HoldoutDraw.kind) == kind)
    if member_id is not None:
        latest = latest.where(col(HoldoutDraw.member_id) == member_id)
    latest = latest.group_by(col(HoldoutDraw.member_id))
    rows = await session.execute(
        select(col(HoldoutDraw.member_id)).where(col(HoldoutDraw.id).in_(latest), col(HoldoutDraw.held_out))
    )
    return {int(m) for m in rows.scalars()}


async def draw_all(
    session: AsyncSession,
    program: Program,
    kind: str,
    campaign: str,
    member_ids: Iterable[int],
    share: float,
    starts_at: datetime,
    now: datetime,
) -> set[int]:
    """A new campaign's draw over its whole audience (a broadcast at creation), inside the caller's unit of work;
    returns the members held out. Nothing is stored without a holdout."""
    if share <= 0:
        return set()
    rotated = await _held_out_last_time(session, kind) if program.analytics.holdout_rotates else set()
    rows: list[dict[str, Any]] = [
        {
            "kind": kind,
            "campaign": campaign,
            "member_id": member_id,
            "held_out": member_id not in rotated and coin(kind, campaign, member_id, share),
            "starts_at": starts_at,
            "drawn_at": now,
        }
        for member_id in member_ids
    ]
    for start in range(0, len(rows), _BATCH):
        await session.execute(insert(HoldoutDraw), rows[start : start + _BATCH])
    return {row["member_id"] for row in rows if row["held_out"]}


async def draw_one(
    session: AsyncSession,
    program: Program,
    kind: str,
    campaign: str,
    member_id: int,
    share: float,
    starts_at: datetime,
    now: datetime,
) -> bool:
    """One member's draw for a campaign decided member by member (a birthday, a win-back lapse), inside the
    caller's unit of work: True if held out. Drawn once; a re-run reads the stored arm."""
    if share <= 0:
        return False
    if (stored := await _stored(session, kind, campaign, member_id)) is not None:
        return stored
    rotated = program.analytics.holdout_rotates and member_id in await _held_out_last_time(session, kind, member_id)
    held_out = not rotated and coin(kind, campaign, member_id, share)
    await insert_once(
        session,
        HoldoutDraw,
        kind=kind,
        campaign=campaign,
        member_id=member_id,
        held_out=held_out,
        starts_at=starts_at,
        drawn_at=now,
    )
    return held_out


async def is_held_out(session: AsyncSession, kind: str, campaign: str, member_id: int) -> bool:
    return bool(await _stored(session, kind, campaign, member_id))


async def _stored(session: AsyncSession, kind: str, campaign: str, member_id: int) -> bool | None:
    """The arm a member was drawn into for a campaign; None: not drawn yet."""
    held_out = await session.execute(
        select(col(HoldoutDraw.held_out)).where(
            col(HoldoutDraw.kind) == kind,
            col(HoldoutDraw.campaign) == campaign,
            col(HoldoutDraw.member_id) == member_id,
        )
    )
    found = held_out.scalar_one_or_none()
    return None if found is None else bool(found)


async def held_out_count(session: AsyncSession, kind: str, campaign: str) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).where(
                    col(HoldoutDraw.kind) == kind, col(HoldoutDraw.campaign) == campaign, col(HoldoutDraw.held_out)
                )
            )
        ).scalar_one()
    )


def parse_share(text: str) -> float | None:
    """A holdout share as an admin writes it: ``0.1``, ``10%`` or ``0``; None if it is not one, or above
    ``HOLDOUT_MAX`` (a campaign that holds back most of its audience is not a campaign)."""
    written = text.strip().replace(",", ".")
    percent = written.endswith("%")
    try:
        value = float(written.rstrip("%").strip()) / (100 if percent else 1)
    except ValueError:
        return None
    if not 0 <= value <= HOLDOUT_MAX or value != value:
        return None
    return round(value, 4)


def held_out(kind: str, campaign: Any, member_id: Any) -> ColumnElement[bool]:
    """SQL: the member was drawn into this campaign's holdout (an index lookup on the UNIQUE key), for due-work
    selections that must pass them over."""
    return exists(
        select(col(HoldoutDraw.id)).where(
            col(HoldoutDraw.kind) == kind,
            col(HoldoutDraw.campaign) == campaign,
            col(HoldoutDraw.member_id) == member_id,
            col(HoldoutDraw.held_out),
        )
    )


class BadHoldout(ValueError):
    """A holdout share that is not a number from 0 to ``HOLDOUT_MAX`` (``word``: what the admin wrote)."""

    def __init__(self, word: str) -> None:
        super().__init__(word)
        self.word = word


def take_share(text: str) -> tuple[str, float]:
    """The chat's segment line with its ``holdout=10%`` (or ``holdout=0.1``) taken out: the rest, and the share
    (0 without one). BadHoldout when the share is not one."""
    share, rest = 0.0, []
    for word in text.split():
        key, _, value = word.partition("=")
        if key.lower() != "holdout":
            rest.append(word)
            continue
        found = parse_share(value)
        if found is None:
            raise BadHoldout(word)
        share = found
    return " ".join(rest), share
