"""Who may do what. Roles come from settings (fixed at start) and from the ``staff_role`` table."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import StaffRole


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    CASHIER = "cashier"
    SUPPORT = "support"
    MEMBER = "member"


class Permission(StrEnum):
    RECORD_PURCHASE = "record_purchase"
    LOOK_UP_MEMBER = "look_up_member"
    ADJUST_POINTS = "adjust_points"
    ANSWER_FEEDBACK = "answer_feedback"
    REDEEM_COUPON = "redeem_coupon"
    MANAGE_REWARDS = "manage_rewards"
    MODERATE = "moderate"  # approve or reject held referrals and shared content
    EDIT_PROFILE = "edit_profile"  # change a member's birthday
    BROADCAST = "broadcast"  # send promotions to segments
    VIEW_REPORTS = "view_reports"  # /stats
    EXPORT_DATA = "export_data"  # /export: members' personal data as CSV
    REFUND_PAYMENTS = "refund_payments"  # give back members' Telegram Stars payments (VIP)
    MANAGE_STAFF = "manage_staff"  # /staff: invite staff, list them, remove roles granted in the database


_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.ADMIN: frozenset(Permission),
    Role.CASHIER: frozenset({Permission.RECORD_PURCHASE, Permission.LOOK_UP_MEMBER, Permission.REDEEM_COUPON}),
    Role.SUPPORT: frozenset({Permission.ANSWER_FEEDBACK, Permission.MODERATE, Permission.EDIT_PROFILE}),
    Role.MEMBER: frozenset(),
}
# When someone holds several roles, the most powerful one decides.
_RANK = [Role.OWNER, Role.ADMIN, Role.CASHIER, Role.SUPPORT, Role.MEMBER]


def can(role: Role, permission: Permission) -> bool:
    return permission in _GRANTS[role]


def covers(held: Role, wanted: Role) -> bool:
    """Whether someone with ``held`` may already do everything ``wanted`` allows."""
    return _GRANTS[wanted] <= _GRANTS[held]


@dataclass(frozen=True)
class StaticRoles:
    """Roles from settings."""

    admins: frozenset[int] = field(default_factory=frozenset)
    cashiers: frozenset[int] = field(default_factory=frozenset)
    support: frozenset[int] = field(default_factory=frozenset)

    def roles_of(self, telegram_id: int) -> set[Role]:
        found = set()
        if telegram_id in self.admins:
            found.add(Role.ADMIN)
        if telegram_id in self.cashiers:
            found.add(Role.CASHIER)
        if telegram_id in self.support:
            found.add(Role.SUPPORT)
        return found

    def staff_ids(self) -> dict[int, Role]:
        ids = self.admins | self.cashiers | self.support
        return {telegram_id: highest(self.roles_of(telegram_id)) for telegram_id in ids}


def rank(role: Role) -> int:
    """0 for the most powerful role: for sorting staff."""
    return _RANK.index(role)


def highest(roles: set[Role]) -> Role:
    return next((role for role in _RANK if role in roles), Role.MEMBER)


async def staff_in_database(session: AsyncSession) -> dict[int, Role]:
    rows = (await session.execute(select(StaffRole))).scalars()
    return {row.telegram_id: Role(row.role) for row in rows}


def merge(static: StaticRoles, telegram_id: int, granted: Role | None) -> Role:
    """Someone's role from settings and the database together: the higher one counts. Every reader of roles
    (the permission check, the command menus, /help, the digest's recipients) comes through here."""
    roles = static.roles_of(telegram_id)
    if granted is not None:
        roles.add(granted)
    return highest(roles)


async def role_of(session: AsyncSession, static: StaticRoles, telegram_id: int) -> Role:
    granted = await session.get(StaffRole, telegram_id)
    return merge(static, telegram_id, Role(granted.role) if granted is not None else None)


async def staff_roles(session: AsyncSession, static: StaticRoles) -> dict[int, Role]:
    """Everyone who holds a staff role, from settings or the database, with the role that counts."""
    granted = await staff_in_database(session)
    ids = static.admins | static.cashiers | static.support | granted.keys()
    return {telegram_id: merge(static, telegram_id, granted.get(telegram_id)) for telegram_id in ids}
