"""The member's profile: birthday, favourite categories, phone number, and the bonus for completing it.

A birthday, once set, only staff can change: otherwise moving it would collect birthday offers twice. The
completion bonus is paid once (``profile_completed_at`` plus the ledger key ``profile:<member>``), even if the
profile is later emptied and filled again.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from loyalty.ledger import Kind, credit
from loyalty.program import Program
from storage.database import begin_write
from storage.models import Member

OLDEST_AGE = 120
_FULL = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$", re.ASCII)
_SHORT = re.compile(r"^(\d{1,2})-(\d{1,2})$", re.ASCII)
_LEAP_YEAR = 2000  # validates MM-DD so that 02-29 is a real day


class BirthdayProblem(StrEnum):
    FORMAT = "format"
    NO_SUCH_DAY = "no_such_day"
    FUTURE = "future"
    TOO_OLD = "too_old"


class BadBirthday(ValueError):
    def __init__(self, problem: BirthdayProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


class BirthdayLocked(Exception):
    """The member already set a birthday; only staff can change it."""


@dataclass(frozen=True)
class Birthday:
    month: int
    day: int
    year: int | None = None

    def __str__(self) -> str:
        short = f"{self.month:02d}-{self.day:02d}"
        return f"{self.year:04d}-{short}" if self.year else short


def parse_birthday(text: str, today: date) -> Birthday:
    """YYYY-MM-DD or MM-DD as a member types it; Feb 29 is a birthday like any other."""
    # NFKC turns the full-width digits and dashes of Chinese keyboards ("０７－１４") into ASCII.
    text = unicodedata.normalize("NFKC", text).strip().replace("/", "-").replace(".", "-")
    if full := _FULL.match(text):
        year, month, day = (int(part) for part in full.groups())
    elif short := _SHORT.match(text):
        year, (month, day) = 0, (int(part) for part in short.groups())
    else:
        raise BadBirthday(BirthdayProblem.FORMAT)
    try:
        born = date(year or _LEAP_YEAR, month, day)
    except ValueError as exc:
        raise BadBirthday(BirthdayProblem.NO_SUCH_DAY) from exc
    if year and born > today:
        raise BadBirthday(BirthdayProblem.FUTURE)
    if year and year < today.year - OLDEST_AGE:
        raise BadBirthday(BirthdayProblem.TOO_OLD)
    return Birthday(month, day, year or None)


def birthday_of(member: Member) -> Birthday | None:
    if member.birth_month is None or member.birth_day is None:
        return None
    return Birthday(member.birth_month, member.birth_day, member.birth_year)


def favourites_of(member: Member) -> list[str]:
    return [key for key in member.favourites.split(",") if key]


def is_complete(member: Member) -> bool:
    return birthday_of(member) is not None and bool(favourites_of(member)) and bool(member.phone)


@dataclass(frozen=True)
class Updated:
    member: Member
    bonus: int  # the completion bonus this change paid, usually 0


async def _load(session: AsyncSession, member_id: int) -> Member:
    await begin_write(session)
    member = await session.get(Member, member_id, populate_existing=True)
    if member is None:
        raise LookupError(member_id)
    return member


async def _save(session: AsyncSession, program: Program, member: Member, now: datetime) -> Updated:
    bonus = 0
    if member.profile_completed_at is None and is_complete(member):
        member.profile_completed_at = now
        bonus = program.profile.bonus
        if bonus:
            assert member.id is not None
            await credit(
                session,
                member.id,
                bonus,
                kind=Kind.PROFILE,
                now=now,
                expires_at=program.expires_at(now),
                key=f"profile:{member.id}",
            )
    session.add(member)
    await session.commit()
    await session.refresh(member)
    return Updated(member, bonus)


async def set_birthday(
    session: AsyncSession,
    program: Program,
    member_id: int,
    birthday: Birthday | None,
    now: datetime,
    *,
    by_staff: bool = False,
) -> Updated:
    """Set (staff: also change or clear) a member's birthday. Raises BirthdayLocked for a member's second try."""
    member = await _load(session, member_id)
    if not by_staff and birthday_of(member) is not None:
        await session.rollback()
        raise BirthdayLocked
    member.birth_month = birthday.month if birthday else None
    member.birth_day = birthday.day if birthday else None
    member.birth_year = birthday.year if birthday else None
    return await _save(session, program, member, now)


async def set_favourite(
    session: AsyncSession, program: Program, member_id: int, key: str, chosen: bool, now: datetime
) -> Updated:
    """Choose or drop one favourite category. Setting a state (not toggling) makes a replayed tap harmless."""
    if program.profile.category(key) is None:
        raise LookupError(key)
    member = await _load(session, member_id)
    keys = set(favourites_of(member)) | {key} if chosen else set(favourites_of(member)) - {key}
    # Program-file order, so the stored value does not depend on the order of taps.
    member.favourites = ",".join(c.key for c in program.profile.categories if c.key in keys)
    return await _save(session, program, member, now)


def normalize_phone(text: str) -> str | None:
    digits = re.sub(r"[\s().-]", "", text)
    if not re.fullmatch(r"\+?[0-9]{5,20}", digits):
        return None
    return digits if digits.startswith("+") else "+" + digits


async def set_phone(session: AsyncSession, program: Program, member_id: int, phone: str, now: datetime) -> Updated:
    normalized = normalize_phone(phone)
    if normalized is None:
        raise ValueError("not a phone number")
    member = await _load(session, member_id)
    member.phone = normalized
    return await _save(session, program, member, now)


async def get_profile(session: AsyncSession, member_id: int) -> Member:
    member = await session.get(Member, member_id, populate_existing=True)
    if member is None:
        raise LookupError(member_id)
    return member
