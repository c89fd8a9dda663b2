"""Editing the program one section at a time (the merchant console's Program editor).

A section is one top-level key of the program file (``earn``, ``rewards``...) or, for ``general``, the file's own
top-level values (name, currency, time zone, staff language). An edit replaces that section in the revision it
started from and is checked by the models in ``loyalty.program`` as a whole program, so every rule that spans
sections (a punch card's reward, a reward's tier) holds too. Problems are keyed by where they are
(``rewards.1.cost``) with the model's own message; saving is ``loyalty.revisions.save_revision`` with the audit
line in the same transaction, refused when another revision was saved since.

The preview evaluates a sample purchase with ``loyalty.earning.earning_for``, the function a real purchase uses,
under the revision in force and under the draft.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty import tiers, vip
from loyalty.earning import Basket, Earning, earning_for
from loyalty.program import Program, ProgramError, program_data
from loyalty.revisions import Revision, same_program, save_revision

GENERAL = "general"
GENERAL_KEYS = ("name", "currency", "timezone", "staff_language")
# The editor's sections in the order a merchant reads them: what members earn first, housekeeping last.
SECTIONS = (
    GENERAL,
    "earn",
    "welcome",
    "expiry",
    "rewards",
    "promotions",
    "punch_cards",
    "stores",
    "tiers",
    "referrals",
    "sharing",
    "profile",
    "birthday",
    "winback",
    "nps",
    "vip",
    "checkin",
    "missions",
    "support",
    "digest",
    "analytics",
    "api",
)
EDIT = "program_edit"  # audit actions
IMPORT = "program_import"
ROLLBACK = "program_rollback"
# A purchase made by nobody: a promotion's per-member limit counts no earlier purchase for the preview.
NOBODY = 0


class Unchanged(Exception):
    """The edit says what the revision in force says: no new revision."""


class Invalid(ProgramError):
    """The edit breaks the program's rules: the problems by place, as ``check`` gives them."""

    def __init__(self, found: dict[str, Problem]) -> None:
        super().__init__("; ".join(f"{where or '(program)'}: {why}" for where, why in found.items()))
        self.problems = found


def section_value(data: dict[str, Any], section: str) -> Any:
    """What the program's data gives for a section: only the keys it sets (None for an absent section)."""
    if section == GENERAL:
        return {key: data[key] for key in GENERAL_KEYS if key in data}
    return copy.deepcopy(data.get(section))


def with_section(program: Program, section: str, value: Any) -> dict[str, Any]:
    """The program's data with ``section`` replaced by ``value``; an empty or null section is left out (its
    defaults apply; for ``vip``: not offered)."""
    if section not in SECTIONS:
        raise KeyError(section)
    data = program_data(program)
    if section == GENERAL:
        if not isinstance(value, dict) or value.keys() - GENERAL_KEYS:
            raise KeyError(section)
        for key in GENERAL_KEYS:
            data.pop(key, None)
        return {**value, **data}
    if value is None or value == {}:
        data.pop(section, None)
    else:
        data[section] = value
    return data


def changed_sections(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The sections two revisions' data differ in (as stored: only the keys each gives)."""
    return [section for section in SECTIONS if section_value(before, section) != section_value(after, section)]


class Problem(str):
    """The model's message (English, as the program file's errors say it), with pydantic's error type and its
    context, so that a screen can say it in the reader's language."""

    kind: str
    context: dict[str, Any]

    def __new__(cls, message: str, kind: str = "", context: dict[str, Any] | None = None) -> Problem:
        problem = super().__new__(cls, message)
        problem.kind, problem.context = kind, dict(context or {})
        return problem


def problems(error: ValidationError) -> dict[str, Problem]:
    """Each problem keyed by its place (``earn.points_per_unit``, ``rewards.0``, or "" for the program as a
    whole), with the model's message."""
    found: dict[str, Problem] = {}
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        reason = "unknown key" if item["type"] == "extra_forbidden" else str(item["msg"]).removeprefix("Value error, ")
        found.setdefault(where, Problem(reason, item["type"], item.get("ctx")))
    return found


def check(data: dict[str, Any]) -> tuple[Program | None, dict[str, Problem]]:
    """The program the data makes, or the problems keyed by place."""
    try:
        return Program.model_validate(data), {}
    except ValidationError as error:
        return None, problems(error)


@dataclass(frozen=True)
class Sample:
    """A purchase the merchant types to see what it earns: the till's fields, the member's tier and VIP."""

    amount: Decimal
    at: datetime  # UTC
    category: str | None = None
    items: int = 1
    tier: str | None = None
    vip: bool = False
    store: str | None = None  # where it is recorded: promotions limited to stores, and that store's clock


@dataclass(frozen=True)
class Estimate:
    earning: Earning
    multiplier: Decimal  # the tier's, with VIP's


async def estimate(session: AsyncSession, program: Program, sample: Sample) -> Estimate:
    """What the sample earns under ``program``, by the rules a recorded purchase is evaluated with (campaigns
    running now included). A tier the program does not have counts as none."""
    vip_until = sample.at + timedelta(days=1) if sample.vip else None
    multiplier = vip.earn_multiplier(program, tiers.multiplier(program, sample.tier), vip_until, sample.at)
    basket = Basket(sample.amount, sample.category, sample.items, sample.at, multiplier, sample.store)
    return Estimate(await earning_for(session, program, NOBODY, basket), multiplier)


async def save_section(
    session: AsyncSession,
    base: Revision,
    section: str,
    value: Any,
    *,
    author: str,
    author_id: int,
    now: datetime,
    note: str | None = None,
) -> Revision:
    """``base`` with ``section`` replaced, as the next revision (``Invalid`` with the problems,
    ``StaleRevision`` when ``base`` is no longer in force, ``Unchanged``)."""
    program, found = check(with_section(base.program, section, value))
    if program is None:
        raise Invalid(found)
    if same_program(program, base.program):
        raise Unchanged
    return await save_revision(
        session, program, based_on=base.number, author=author, author_id=author_id, now=now, note=note, audit=EDIT
    )


same = same_program  # whether two programs say the same, defaults included
