"""The program as data: numbered revisions in the database, the highest one in force.

The program file (``program.example.toml`` or LOYALTY_PROGRAM_FILE) becomes revision 1 on a fresh database and is
an import and export format after that. Every revision is checked by the models in ``loyalty.program`` and keeps
only the keys it gives (``program_data``). A new revision is based on the one its editor saw: saving refuses when
another was saved in between (``StaleRevision``), so no edit is lost. Each purchase records the revision it was
evaluated under; processes pick a new revision up by reading ``current_number`` (``bot.programs``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import tomli_w
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.program import Program, program_data, program_from_data
from loyalty.rewards import sync_catalog
from storage.database import begin_write
from storage.models import AuditLog, ProgramRevision

# Who made a revision, besides a Telegram user's id.
FROM_FILE = "file"  # the program file, at the first start on a fresh database
FROM_CLI = "cli"  # `loyalty program import` or `rollback`
CHANNEL = "loyalty:program"  # Redis pub/sub (``bot.programs``): the message is the new revision's number
FROM_TELEGRAM = "telegram"  # an admin in chat or the Mini App's console (author_id is theirs)


class ProgramRef:
    """The program in force in this process. Whoever needs the program reads ``current`` when they need it (a
    handler per update, a job per run); a new revision replaces it whole, in one assignment."""

    def __init__(self, program: Program) -> None:
        self.current = program

    @property
    def revision(self) -> int | None:
        return self.current.revision


@dataclass(frozen=True)
class Revision:
    number: int
    program: Program
    based_on: int | None
    restores: int | None
    author: str
    author_id: int | None
    note: str | None
    created_at: datetime


class StaleRevision(Exception):
    """The revision an edit started from is no longer current: someone saved another in between."""

    def __init__(self, based_on: int | None, current: int | None, changed: list[str]) -> None:
        self.based_on, self.current, self.changed = based_on, current, changed
        what = f" (changed: {', '.join(changed)})" if changed else ""
        super().__init__(
            f"the program changed since revision {based_on}: revision {current} is in force now{what}. "
            f"Start again from revision {current}"
        )


def same_program(one: Program, other: Program) -> bool:
    """Whether two programs say the same, defaults included (a key written out equal to its default is no
    change)."""
    return one.model_dump(mode="json") == other.model_dump(mode="json")


def changed_keys(before: Program, after: Program) -> list[str]:
    """The program's top-level keys (``earn``, ``rewards``, ...) whose values differ."""
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    return [key for key in new if old.get(key) != new[key]]


def program_toml(program: Program) -> str:
    """The program as a program file again (``loyalty program export``): the keys it gives, in the models' order."""
    return tomli_w.dumps(_without_none(program_data(program)))


def _without_none(value: Any) -> Any:
    # TOML has no null; a key without a value is the same as one not given.
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


async def current_number(session: AsyncSession) -> int | None:
    """The revision in force: one read of the primary key's index, cheap enough to poll."""
    return (await session.execute(select(func.max(col(ProgramRevision.number))))).scalar_one_or_none()


def _revision(row: ProgramRevision) -> Revision:
    program = program_from_data(json.loads(row.program), f"program revision {row.number}", revision=row.number)
    return Revision(
        row.number, program, row.based_on, row.restores, row.author, row.author_id, row.note, row.created_at
    )


async def get_revision(session: AsyncSession, number: int) -> Revision | None:
    """A revision, checked again by today's models (``ProgramError`` names the key if it no longer passes)."""
    row = await session.get(ProgramRevision, number)
    return _revision(row) if row is not None else None


async def current_revision(session: AsyncSession) -> Revision | None:
    number = await current_number(session)
    return await get_revision(session, number) if number is not None else None


async def history(session: AsyncSession, limit: int = 20) -> list[ProgramRevision]:
    """The latest revisions, newest first, as stored (not checked)."""
    rows = await session.execute(select(ProgramRevision).order_by(col(ProgramRevision.number).desc()).limit(limit))
    return list(rows.scalars())


async def save_revision(
    session: AsyncSession,
    program: Program | dict[str, Any],
    *,
    based_on: int | None,
    author: str,
    now: datetime,
    author_id: int | None = None,
    note: str | None = None,
    restores: int | None = None,
    audit: str | None = None,
) -> Revision:
    """Store ``program`` as the revision after ``based_on`` and bring the reward catalog in line with it.

    ``program`` as data is checked first (``ProgramError`` naming the key; nothing is stored). Raises
    ``StaleRevision`` if ``based_on`` is not the revision in force (None: there is none yet). ``audit``: the
    audit log's action for a person's change (``author_id``), written with the revision, naming what changed."""
    if isinstance(program, dict):
        program = program_from_data(program)
    await begin_write(session)
    current = await current_number(session)
    if current != based_on:
        await session.rollback()
        raise await _stale(session, based_on, current)
    number = (current or 0) + 1
    if audit is not None and author_id is not None:
        before = await get_revision(session, current) if current is not None else None
        changed = changed_keys(before.program, program) if before is not None else []
        detail = f"program revision {number}" + (f" ({', '.join(changed)})" if changed else "")
        if restores is not None:
            detail += f", brings back revision {restores}"
        detail = f"{detail}: {note}" if note else detail
        session.add(AuditLog(actor_id=author_id, action=audit, detail=detail[:512], created_at=now))
    session.add(
        ProgramRevision(
            number=number,
            program=json.dumps(program_data(program), ensure_ascii=False),
            based_on=based_on,
            restores=restores,
            author=author,
            author_id=author_id,
            note=note,
            created_at=now,
        )
    )
    try:
        await session.commit()
    except IntegrityError:  # another editor's revision took this number first
        await session.rollback()
        raise await _stale(session, based_on, await current_number(session)) from None
    saved = await get_revision(session, number)
    assert saved is not None
    # The catalog follows the revision in force. Were this process to stop here, the next start syncs it.
    await sync_catalog(session, saved.program)
    return saved


async def _stale(session: AsyncSession, based_on: int | None, current: int | None) -> StaleRevision:
    before = await get_revision(session, based_on) if based_on is not None else None
    after = await get_revision(session, current) if current is not None else None
    changed = changed_keys(before.program, after.program) if before is not None and after is not None else []
    return StaleRevision(based_on, current, changed)


async def rollback_to(
    session: AsyncSession,
    number: int,
    *,
    based_on: int | None,
    author: str,
    now: datetime,
    author_id: int | None = None,
    note: str | None = None,
    audit: str | None = None,
) -> Revision:
    """Make revision ``number`` current again: a new revision with its content. ``LookupError`` if there is none."""
    old = await get_revision(session, number)
    if old is None:
        raise LookupError(number)
    return await save_revision(
        session,
        old.program,
        based_on=based_on,
        author=author,
        now=now,
        author_id=author_id,
        note=note,
        restores=number,
        audit=audit,
    )


async def ensure_first_revision(session: AsyncSession, program: Program, now: datetime) -> Revision:
    """The revision in force; on a fresh database the program file becomes revision 1 first. Workers starting
    together on a fresh database each try: one stores it, the others read the one it stored."""
    current = await current_revision(session)
    if current is not None:
        return current
    try:
        return await save_revision(session, program, based_on=None, author=FROM_FILE, now=now)
    except StaleRevision:
        current = await current_revision(session)
        assert current is not None
        return current


async def announce(redis: Any, number: int) -> None:
    """Tell every process listening (``bot.programs.ProgramWatcher``) that revision ``number`` is in force; those
    that miss it read the number within 30 s anyway."""
    await redis.publish(CHANNEL, str(number))
