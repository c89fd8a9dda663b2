"""Stores: a chain of shops running one program (``[[stores]]``).

A purchase, a refund and a coupon accepted at a till record their store: the one given explicitly (the API's
``store``), else the API token's (``[[stores]] tokens``), else the store the cashier works at (``/staff store``).
With no ``[[stores]]`` in the program nothing records a store and nothing below changes what happens.

A cashier of one store cannot refund another store's purchase; admins can (they run the chain). Promotions and
rewards can be limited to stores (``stores = ["airport"]``): a promotion applies only to purchases recorded
there (``loyalty.earning``), a reward's coupons are accepted only at those tills (``Program.accepted_at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.members import find_member
from loyalty.program import Program, StoreRule
from loyalty.roles import Permission, Role, StaticRoles, can, role_of
from storage.database import begin_write
from storage.models import AuditLog, Purchase, StaffStore


class UnknownStore(ValueError):
    """A store key the program does not name."""

    def __init__(self, key: str, program: Program) -> None:
        super().__init__(key)
        self.key, self.known = key, [store.key for store in program.stores]


def checked(program: Program, key: str | None) -> str | None:
    """``key`` if the program names it (None stays None); raises UnknownStore."""
    if key is None:
        return None
    if program.store(key) is None:
        raise UnknownStore(key, program)
    return key


def of_token(program: Program, token_name: str | None) -> str | None:
    """The store whose tills use this API token, if any."""
    return next((store.key for store in program.stores if token_name in store.tokens), None) if token_name else None


async def of_staff(session: AsyncSession, program: Program, telegram_id: int | None) -> str | None:
    """The store a staff member works at, if the program still names it."""
    if telegram_id is None or not program.stores:
        return None
    row = await session.get(StaffStore, telegram_id)
    return row.store if row is not None and program.store(row.store) is not None else None


async def where(
    session: AsyncSession,
    program: Program,
    *,
    explicit: str | None = None,
    token_name: str | None = None,
    actor_id: int | None = None,
) -> str | None:
    """Where something recorded now happens: the explicit store, the API token's, or the cashier's. Raises
    UnknownStore for an explicit key the program does not name."""
    if explicit is not None:
        return checked(program, explicit)
    return of_token(program, token_name) or await of_staff(session, program, actor_id)


def may_refund(actor_role: Role, actor_store: str | None, purchase_store: str | None) -> bool:
    """A cashier refunds their own store's purchases (and those recorded without a store); admins every store's."""
    if can(actor_role, Permission.MANAGE_STAFF) or purchase_store is None:
        return True
    return actor_store == purchase_store


class AssignOutcome(StrEnum):
    ASSIGNED = "assigned"
    CLEARED = "cleared"
    NOT_STAFF = "not_staff"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Assignment:
    outcome: AssignOutcome
    telegram_id: int | None = None
    name: str | None = None
    store: StoreRule | None = None


async def assign(
    session: AsyncSession,
    program: Program,
    static: StaticRoles,
    *,
    ref: str,
    store: str | None,
    actor_id: int,
    now: datetime,
) -> Assignment:
    """Make a staff member (a member code, @username or Telegram id) work at ``store`` (None: no store); audited.
    Raises UnknownStore for a key the program does not name."""
    rule = program.store(checked(program, store)) if store is not None else None
    await begin_write(session)
    member = await find_member(session, ref)
    telegram_id = member.telegram_id if member is not None else int(ref) if ref.isdecimal() else None
    if telegram_id is None:
        await session.rollback()
        return Assignment(AssignOutcome.NOT_FOUND)
    name = member.first_name if member is not None else None
    if await role_of(session, static, telegram_id) is Role.MEMBER:
        await session.rollback()
        return Assignment(AssignOutcome.NOT_STAFF, telegram_id, name)
    await session.execute(delete(StaffStore).where(col(StaffStore.telegram_id) == telegram_id))
    if rule is not None:
        session.add(StaffStore(telegram_id=telegram_id, store=rule.key, assigned_by=actor_id, assigned_at=now))
    session.add(
        AuditLog(
            actor_id=actor_id,
            action="staff_store",
            member_id=member.id if member is not None else None,
            detail=f"{telegram_id} {rule.key if rule else '-'}",
            created_at=now,
        )
    )
    await session.commit()
    outcome = AssignOutcome.ASSIGNED if rule is not None else AssignOutcome.CLEARED
    return Assignment(outcome, telegram_id, name, rule)


async def assignments(session: AsyncSession) -> dict[int, str]:
    """Every staff member's store, by Telegram id."""
    rows = await session.execute(select(col(StaffStore.telegram_id), col(StaffStore.store)))
    return {int(telegram_id): store for telegram_id, store in rows}


async def usual_store(session: AsyncSession, member_id: int) -> str | None:
    """The store a member buys at most (the latest bought at, on a tie): the support desk shows it."""
    count = func.count()
    row = await session.execute(
        select(col(Purchase.store))
        .where(col(Purchase.member_id) == member_id, col(Purchase.store).is_not(None))
        .group_by(col(Purchase.store))
        .order_by(count.desc(), func.max(col(Purchase.created_at)).desc())
        .limit(1)
    )
    return row.scalar_one_or_none()
