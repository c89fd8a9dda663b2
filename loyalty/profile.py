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
_LEAP_YEAR = 2000  # validates a day without a year so that Feb 29 is a real day
# Year first, with any separator: 1990-07-14, 1990/7/14, 1990.7.14. Never ambiguous.
_YEAR_FIRST = re.compile(r"^(\d{4})([-/.])(\d{1,2})\2(\d{1,2})$", re.ASCII)
# The documented short form, month first: 07-14. A dash means MM-DD, as the prompt says.
_MONTH_DAY = re.compile(r"^(\d{1,2})-(\d{1,2})$", re.ASCII)
# Two numbers with a slash or a dot, and optionally a year last: 05/03, 5.3, 14/07/1990. The order is guessed
# only where one reading is not a date; otherwise the member is asked to write it unmistakably.
_EITHER_ORDER = re.compile(r"^(\d{1,2})([/.])(\d{1,2})(?:\2(\d{4}))?$", re.ASCII)
# Chinese: 5月3日, 1990年5月3日 (日, or 号/號 as people say it).
_CHINESE = re.compile(r"^(?:([0-9]{4})\s*年\s*)?([0-9]{1,2})\s*月\s*([0-9]{1,2})\s*[日号號]?$")
_ORDINAL = r"(\d{1,2})(?:st|nd|rd|th)?"
_MONTH_NAME = r"([a-z]{3,9})\.?"
# A month name makes the order plain: 3 May, May 3, 3 May 1990, May 3, 1990, 3rd of May.
_DAY_NAME = re.compile(rf"^{_ORDINAL}\s+(?:of\s+)?{_MONTH_NAME},?(?:\s+(\d{{4}}))?$", re.ASCII)
_NAME_DAY = re.compile(rf"^{_MONTH_NAME}\s+{_ORDINAL},?(?:\s+(\d{{4}}))?$", re.ASCII)
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)


class BirthdayProblem(StrEnum):
    FORMAT = "format"
    AMBIGUOUS = "ambiguous"  # both day-month and month-day readings are dates: ``readings`` holds them
    NO_SUCH_DAY = "no_such_day"
    FUTURE = "future"
    TOO_OLD = "too_old"


@dataclass(frozen=True)
class Birthday:
    month: int
    day: int
    year: int | None = None

    def __str__(self) -> str:
        short = f"{self.month:02d}-{self.day:02d}"
        return f"{self.year:04d}-{short}" if self.year else short

    @classmethod
    def from_key(cls, key: str) -> Birthday:
        """The inverse of ``str()``: "1990-07-14" or "07-14". Raises ValueError for anything else or no such day."""
        if full := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", key, re.ASCII):
            year, month, day = (int(part) for part in full.groups())
        elif short := re.fullmatch(r"(\d{2})-(\d{2})", key, re.ASCII):
            year, (month, day) = 0, (int(part) for part in short.groups())
        else:
            raise ValueError(key)
        date(year or _LEAP_YEAR, month, day)  # raises ValueError for a day that does not exist
        return cls(month, day, year or None)

    def as_date(self) -> date:
        """The birthday as a date, in a leap year when no year is known (so Feb 29 is a date too)."""
        return date(self.year or _LEAP_YEAR, self.month, self.day)


class BadBirthday(ValueError):
    def __init__(self, problem: BirthdayProblem, readings: tuple[Birthday, Birthday] | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.readings = readings  # for AMBIGUOUS: day-month first, then month-day


class BirthdayLocked(Exception):
    """The member already set a birthday; only staff can change it."""


def _month(name: str) -> int:
    """A month's English name or its abbreviation of at least three letters ("Sept" too)."""
    found = [number for number, month in enumerate(_MONTHS, 1) if month.startswith(name)]
    if len(name) < 3 or len(found) != 1:
        raise BadBirthday(BirthdayProblem.FORMAT)
    return found[0]


def _exists(year: int, month: int, day: int) -> bool:
    try:
        date(year or _LEAP_YEAR, month, day)
    except ValueError:
        return False
    return True


def _read(text: str) -> tuple[int, int, int]:
    """(year or 0, month, day) as written, before checking that the day exists."""
    if match := _YEAR_FIRST.match(text):
        return int(match[1]), int(match[3]), int(match[4])
    if match := _MONTH_DAY.match(text):
        return 0, int(match[1]), int(match[2])
    if match := _CHINESE.match(text):
        return int(match[1] or 0), int(match[2]), int(match[3])
    if match := _DAY_NAME.match(text.lower()):
        return int(match[3] or 0), _month(match[2]), int(match[1])
    if match := _NAME_DAY.match(text.lower()):
        return int(match[3] or 0), _month(match[1]), int(match[2])
    if match := _EITHER_ORDER.match(text):
        first, second, year = int(match[1]), int(match[3]), int(match[4] or 0)
        day_month, month_day = _exists(year, second, first), _exists(year, first, second)
        if day_month and month_day and first != second:
            raise BadBirthday(
                BirthdayProblem.AMBIGUOUS,
                (Birthday(second, first, year or None), Birthday(first, second, year or None)),
            )
        return (year, second, first) if day_month else (year, first, second)
    raise BadBirthday(BirthdayProblem.FORMAT)


def parse_birthday(text: str, today: date) -> Birthday:
    """A birthday as a member types it: 1990-07-14, 07-14 (month first, the documented short form), 1990/7/14,
    14 July, July 14, 14 July 1990, 7月14日, 1990年7月14日; 14/07 or 7.14 where only one order is a date.
    Where both orders are dates (05/03) BadBirthday(AMBIGUOUS) says so: the member writes the month's name or the
    year first. Feb 29 is a birthday like any other."""
    # NFKC turns the full-width digits and dashes of Chinese keyboards ("０７－１４") into ASCII.
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    year, month, day = _read(text)
    if not _exists(year, month, day):
        raise BadBirthday(BirthdayProblem.NO_SUCH_DAY)
    born = date(year or _LEAP_YEAR, month, day)
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


async def _load(session: AsyncSession, member_id: int, *, lock: bool = False) -> Member:
    await begin_write(session)
    member = await session.get(Member, member_id, populate_existing=True, with_for_update=lock)
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
    """Set (staff: also change or clear) a member's birthday. Raises BirthdayLocked for a member's second try;
    the row lock makes two concurrent first tries (a double tap on ✅ Confirm) store it once."""
    member = await _load(session, member_id, lock=not by_staff)
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
