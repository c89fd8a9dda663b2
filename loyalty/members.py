"""Members: joining, codes, languages, and finding a member from what a cashier types."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped
from sqlmodel import col

from loyalty import referrals, winback
from loyalty.codes import new_code, normalize_code
from loyalty.ledger import Kind, credit
from loyalty.numbers import whole
from loyalty.privacy import can_message
from loyalty.program import Program
from loyalty.roles import Role, StaticRoles, merge, role_of
from storage.database import PreparedRead, begin_write
from storage.models import Member, StaffRole

LANGUAGES = ("en", "zh-Hans", "zh-Hant")
_TRADITIONAL = ("zh-hant", "zh-tw", "zh-hk", "zh-mo")


def map_language(language_code: str | None) -> str:
    """Telegram's IETF ``language_code`` to one of the languages the bot speaks."""
    code = (language_code or "").lower().replace("_", "-")
    if code.startswith(_TRADITIONAL):
        return "zh-Hant"
    if code == "zh" or code.startswith("zh-"):
        return "zh-Hans"
    return "en"


@dataclass(frozen=True)
class JoinResult:
    member: Member
    created: bool
    welcome_points: int
    # What a referral payload did: linked the new member to a friend, or why not. None without one.
    referral: referrals.Linked | None = None
    returned: bool = False  # an erased member came back


async def get_by_telegram_id(session: AsyncSession, telegram_id: int) -> Member | None:
    result = await session.execute(select(Member).where(col(Member.telegram_id) == telegram_id))
    return result.scalar_one_or_none()


async def members_of(session: AsyncSession, statement: Select[Member] | None) -> list[Member]:
    """The members a job's selection names (None: nothing is due)."""
    return [] if statement is None else list((await session.execute(statement)).scalars().all())


async def reachable(session: AsyncSession, member_id: int) -> Member | None:
    """A member the bot may still write to: None if gone, blocked or erased."""
    member = await session.get(Member, member_id)
    return member if member is not None and can_message(member) else None


async def get_by_code(session: AsyncSession, code: str) -> Member | None:
    result = await session.execute(select(Member).where(col(Member.code) == code))
    return result.scalar_one_or_none()


MAX_REF = 64  # longer than any code, Telegram id or username: a paste gone wrong


async def find_member(session: AsyncSession, ref: str) -> Member | None:
    """A member by member code, numeric Telegram id or @username, as a cashier types it or a till sends it.

    The one look-up for staff commands and the API: an erased member is not found, whoever asks."""
    member = await _find(session, ref.strip())
    return member if member is not None and member.erased_at is None else None


async def _find(session: AsyncSession, ref: str) -> Member | None:
    if len(ref) > MAX_REF:
        return None
    if ref.startswith("@"):
        name = ref[1:].lower()
        if not name:
            return None
        result = await session.execute(select(Member).where(col(Member.username) == name))
        return result.scalar_one_or_none()
    if (telegram_id := whole(ref)) is not None:
        member = await get_by_telegram_id(session, telegram_id)
        if member is not None:
            return member
    code = normalize_code(ref)
    return await get_by_code(session, code) if code else None


SEARCH_LIMIT = 20
_HANDLE = re.compile(r"^[a-z0-9_]{3,32}$")
_PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{2,24}$")
_TOP = "\U0010ffff"  # sorts after every character: ``p <= s < p + _TOP`` is "s starts with p"


def _starts_with(column: Any, prefix: str, postgresql: bool) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, as each database answers from an index: on PostgreSQL a LIKE prefix (the
    ``text_pattern_ops`` indexes of ``storage.models.Member``), on SQLite a range over a plain index (binary order)."""
    if postgresql:
        escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
        return column.like(escaped + "%", escape="/")
    return and_(column >= prefix, column < prefix + _TOP)


async def search_members(session: AsyncSession, text: str, limit: int = SEARCH_LIMIT) -> list[Member]:
    """Members an admin looks for: an exact member code, Telegram id or @username first, then names, usernames and
    phone numbers (with the country code) that start with what was typed. At most ``limit``, erased members never.

    Each field is its own query on its own index, each at most ``limit`` rows: bounded on a million members."""
    query = " ".join(text.split())
    if not query or len(query) > MAX_REF:
        return []
    found: dict[int, Member] = {}
    if (exact := await find_member(session, query)) is not None and exact.id is not None:
        found[exact.id] = exact
    postgresql = session.bind is not None and session.bind.dialect.name == "postgresql"
    lowered = query.lower()
    wanted: list[ColumnElement[bool]] = []
    if lowered.startswith("@"):
        if _HANDLE.match(lowered[1:]):
            wanted.append(_starts_with(col(Member.username), lowered[1:], postgresql))
    else:
        wanted.append(_starts_with(func.lower(col(Member.first_name)), lowered, postgresql))
        if _HANDLE.match(lowered):
            wanted.append(_starts_with(col(Member.username), lowered, postgresql))
        if _PHONE.match(query):
            digits = "+" + re.sub(r"[^0-9]", "", query)
            wanted.append(_starts_with(col(Member.phone), digits, postgresql))
    for condition in wanted:
        if len(found) >= limit:
            break
        rows = await session.execute(
            select(Member).where(condition, col(Member.erased_at).is_(None)).order_by(col(Member.id)).limit(limit)
        )
        for member in rows.scalars():
            if member.id is not None:
                found.setdefault(member.id, member)
    first = [exact] if exact is not None else []
    rest = sorted((m for m in found.values() if m is not exact), key=lambda m: (m.first_name.lower(), m.id or 0))
    return (first + rest)[:limit]


async def join(
    session: AsyncSession,
    program: Program,
    *,
    telegram_id: int,
    chat_id: int,
    first_name: str,
    last_name: str | None,
    username: str | None,
    language_code: str | None,
    payload: str | None,
    now: datetime,
) -> JoinResult:
    """Register a member once and pay the welcome bonus once; a second call refreshes names (and brings back a
    member who erased their data, without a second welcome bonus)."""
    await begin_write(session)
    first, last = first_name[:128], last_name[:128] if last_name else None
    handle = username.lower() if username else None
    member = await get_by_telegram_id(session, telegram_id)
    created = member is None
    returned = member is not None and member.erased_at is not None
    if member is not None:
        member.first_name, member.last_name, member.username = first, last, handle
        member.chat_id, member.last_seen_at, member.blocked_at, member.erased_at = chat_id, now, None, None
    else:
        member = Member(
            telegram_id=telegram_id,
            chat_id=chat_id,
            code=await _unused_code(session),
            first_name=first,
            last_name=last,
            username=handle,
            language=map_language(language_code),
            joined_at=now,
            last_seen_at=now,
        )
    session.add(member)
    try:
        await session.flush()
        assert member.id is not None
        if created:
            await winback.plan(session, program, member)
        if created and program.welcome.bonus:
            await credit(
                session,
                member.id,
                program.welcome.bonus,
                kind=Kind.WELCOME,
                now=now,
                expires_at=program.expires_at(now),
                key=f"welcome:{member.id}",
            )
        linked = None
        if referrals.is_referral_payload(payload):
            linked = await referrals.on_start(
                session, program, member, referrals.referral_code(payload), created=created, now=now
            )
        await session.commit()
    except IntegrityError:
        # Two deliveries of the same /start raced; the other one registered the member.
        await session.rollback()
        winner = await get_by_telegram_id(session, telegram_id)
        if winner is None:
            raise
        return JoinResult(winner, created=False, welcome_points=0)
    if created:
        await session.refresh(member)
    return JoinResult(
        member,
        created=created,
        welcome_points=program.welcome.bonus if created else 0,
        referral=linked,
        returned=returned,
    )


async def _unused_code(session: AsyncSession) -> str:
    while True:
        code = new_code()
        taken = await session.execute(select(func.count()).where(col(Member.code) == code))
        if not taken.scalar_one():
            return code


async def set_language(session: AsyncSession, member_id: int, language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unsupported language {language!r}")
    await begin_write(session)
    member = await session.get(Member, member_id)
    if member is None:
        raise LookupError(member_id)
    member.language = language
    session.add(member)
    await session.commit()


@dataclass(frozen=True, slots=True)
class MemberView:
    """The sender as a member, read once per update. An immutable snapshot: handlers change members only
    through ``loyalty`` functions, and reading it costs no ORM bookkeeping on the hottest path."""

    id: int
    telegram_id: int
    chat_id: int
    code: str
    first_name: str
    last_name: str | None
    username: str | None
    language: str
    points: int
    lifetime_points: int
    tier: str | None


Column = ColumnElement[Any] | Mapped[Any]
"""A column expression; the ORM attributes of a table (``col(Member.points)``) count as one."""


_IDENTITY_WIDTH = len(MemberView.__slots__)


_MEMBER_AND_GRANT = PreparedRead(
    select(*[col(getattr(Member, name)) for name in MemberView.__slots__], col(StaffRole.role))
    .outerjoin(StaffRole, col(StaffRole.telegram_id) == col(Member.telegram_id))
    .where(col(Member.telegram_id) == bindparam("telegram_id"), col(Member.erased_at).is_(None))
)


async def identify(session: AsyncSession, static: StaticRoles, telegram_id: int) -> tuple[MemberView | None, Role]:
    """Who sent an update: the member (None before /start, or after they erased their data) and their role, in
    one query for members."""
    row = await _MEMBER_AND_GRANT.first(session, {"telegram_id": telegram_id})
    if row is None:
        return None, await role_of(session, static, telegram_id)
    fields, granted = row[:_IDENTITY_WIDTH], row[_IDENTITY_WIDTH]
    return MemberView(*fields), merge(static, telegram_id, Role(granted) if granted is not None else None)
