"""Staff set up in chat: one-time invitation links, the list of staff, removing roles granted in the database.

An admin's ``/staff invite cashier`` makes a link ``t.me/<bot>?start=staff_<token>``; whoever opens it first within
24 hours gets the role, in the ``staff_role`` table that every role check reads (``loyalty.roles``), so it counts
from their next message. Only the token's SHA-256 is stored. Using a token is a conditional update: two people
opening one link at once, one of them gets the role. Roles from settings stay as they are: chat cannot remove
them. Every change is written to the audit log (/audit).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.members import find_member, get_by_telegram_id
from loyalty.numbers import whole
from loyalty.roles import Role, StaticRoles, covers, highest, merge, rank, role_of
from storage.database import begin_write
from storage.models import AuditLog, Member, StaffInvite, StaffRole

PREFIX = "staff_"
LIFETIME = timedelta(hours=24)
INVITABLE = (Role.CASHIER, Role.SUPPORT, Role.ADMIN)
_TOKEN_BYTES = 24  # 32 URL-safe characters: with the prefix 38, within Telegram's 64 for a start parameter
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,58}$")


def payload_for(token: str) -> str:
    return PREFIX + token


def is_staff_payload(payload: str | None) -> bool:
    return payload is not None and payload.startswith(PREFIX)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _audit(
    session: AsyncSession, *, actor_id: int, action: str, member: Member | None, detail: str, now: datetime
) -> None:
    session.add(
        AuditLog(
            actor_id=actor_id,
            action=action,
            member_id=member.id if member is not None else None,
            detail=detail[:512],
            created_at=now,
        )
    )


@dataclass(frozen=True)
class Invite:
    token: str  # shown once, in the link; only its digest is stored
    role: Role
    expires_at: datetime

    @property
    def payload(self) -> str:
        return payload_for(self.token)


async def create_invite(
    session: AsyncSession, *, role: Role, actor_id: int, now: datetime, token: str | None = None
) -> Invite:
    """A new one-time invitation for ``role`` (one of INVITABLE), written to the audit log. ``token``: one the caller
    derived from a request's key (the Mini App's), so that the request repeated finds its invitation again."""
    if role not in INVITABLE:
        raise ValueError(f"{role!r} cannot be given by invitation")
    if token is not None and not _TOKEN.match(token):
        raise ValueError("not an invitation token")
    token = token or secrets.token_urlsafe(_TOKEN_BYTES)
    await begin_write(session)
    made = (
        await session.execute(select(StaffInvite).where(col(StaffInvite.token_hash) == _digest(token)))
    ).scalar_one_or_none()
    if made is not None:  # a replay: the same invitation, nothing new
        role, expires_at = Role(made.role), made.expires_at
        await session.rollback()
        return Invite(token, role, expires_at)
    expires_at = now + LIFETIME
    invite = StaffInvite(
        token_hash=_digest(token), role=role.value, created_by=actor_id, created_at=now, expires_at=expires_at
    )
    session.add(invite)
    await session.flush()
    _audit(
        session,
        actor_id=actor_id,
        action="staff_invite",
        member=None,
        detail=f"role={role.value} invite={invite.id}",
        now=now,
    )
    await session.commit()
    return Invite(token, role, expires_at)


class Outcome(StrEnum):
    JOINED = "joined"  # the role is theirs now
    UNKNOWN = "unknown"  # no such invitation (a mistyped or made-up link)
    EXPIRED = "expired"
    USED = "used"  # someone else opened it first
    USED_BY_YOU = "used_by_you"  # they opened it before: nothing more to do
    HELD = "held"  # they may do everything the role allows already: the link stays unused for someone else
    SETTINGS = "settings"  # their role from settings outranks it and would hide it: the link stays unused


@dataclass(frozen=True)
class Acceptance:
    outcome: Outcome
    role: Role | None = None  # the invitation's role (None: unknown invitation)
    now_role: Role = Role.MEMBER  # their role afterwards, settings and database together
    invited_by: int | None = None
    expired_at: datetime | None = None


async def accept_invite(
    session: AsyncSession, static: StaticRoles, *, payload: str, telegram_id: int, now: datetime
) -> Acceptance:
    """Someone opened ``t.me/<bot>?start=<payload>``: give them the invitation's role if it is still open."""
    token = payload[len(PREFIX) :] if is_staff_payload(payload) else ""
    if not _TOKEN.match(token):
        return Acceptance(Outcome.UNKNOWN, now_role=await role_of(session, static, telegram_id))
    await begin_write(session)
    invite = (
        await session.execute(select(StaffInvite).where(col(StaffInvite.token_hash) == _digest(token)))
    ).scalar_one_or_none()
    current = await role_of(session, static, telegram_id)
    if invite is None or invite.id is None:
        await session.rollback()
        return Acceptance(Outcome.UNKNOWN, now_role=current)
    # Read before any rollback, which expires the row.
    role, invite_id, invited_by = Role(invite.role), invite.id, invite.created_by
    used_by, expires_at = invite.used_by, invite.expires_at
    if used_by is not None:
        await session.rollback()
        outcome = Outcome.USED_BY_YOU if used_by == telegram_id else Outcome.USED
        return Acceptance(outcome, role, current, invited_by)
    if now >= expires_at:
        await session.rollback()
        return Acceptance(Outcome.EXPIRED, role, current, invited_by, expires_at)
    if covers(current, role):
        await session.rollback()
        return Acceptance(Outcome.HELD, role, current, invited_by)
    after = merge(static, telegram_id, role)
    if not covers(after, role):
        await session.rollback()
        return Acceptance(Outcome.SETTINGS, role, current, invited_by)
    # The token is used once, whoever races for it: only the update that finds it unused counts.
    taken = await session.execute(
        update(StaffInvite)
        .where(col(StaffInvite.id) == invite_id, col(StaffInvite.used_by).is_(None))
        .values(used_by=telegram_id, used_at=now)
    )
    if taken.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        return Acceptance(Outcome.USED, role, current, invited_by)
    grant = await session.get(StaffRole, telegram_id)
    previous = grant.role if grant is not None else None
    if grant is None:
        grant = StaffRole(telegram_id=telegram_id, role=role.value, granted_at=now)
    else:
        grant.role, grant.granted_at = role.value, now
    session.add(grant)
    member = await get_by_telegram_id(session, telegram_id)
    detail = f"role={role.value} invite={invite_id} from={invited_by}" + (f" was={previous}" if previous else "")
    _audit(session, actor_id=telegram_id, action="staff_join", member=member, detail=detail, now=now)
    await session.commit()
    return Acceptance(Outcome.JOINED, role, after, invited_by)


@dataclass(frozen=True)
class StaffEntry:
    telegram_id: int
    role: Role  # the one that counts
    from_settings: frozenset[Role]
    granted: Role | None  # in the database
    granted_at: datetime | None
    invited_by: int | None  # who made the invitation the database role came from, if it came from one
    name: str | None  # None: not a member (or erased)
    username: str | None
    code: str | None


async def staff_list(session: AsyncSession, static: StaticRoles) -> list[StaffEntry]:
    """Everyone with a staff role, from settings or the database: most powerful first, then by Telegram id."""
    grants = {row.telegram_id: row for row in (await session.execute(select(StaffRole))).scalars()}
    ids = static.admins | static.cashiers | static.support | grants.keys()
    if not ids:
        return []
    members = {
        m.telegram_id: m
        for m in (
            await session.execute(
                select(Member).where(col(Member.telegram_id).in_(ids), col(Member.erased_at).is_(None))
            )
        ).scalars()
    }
    inviters: dict[int, int] = {}
    used = await session.execute(
        select(col(StaffInvite.used_by), col(StaffInvite.created_by))
        .where(col(StaffInvite.used_by).in_(grants.keys()))
        .order_by(col(StaffInvite.used_at))
    )
    for used_by, created_by in used.all():
        if used_by is not None:
            inviters[used_by] = created_by  # the latest invitation wins
    entries = []
    for telegram_id in ids:
        grant = grants.get(telegram_id)
        granted = Role(grant.role) if grant is not None else None
        member = members.get(telegram_id)
        entries.append(
            StaffEntry(
                telegram_id=telegram_id,
                role=merge(static, telegram_id, granted),
                from_settings=frozenset(static.roles_of(telegram_id)),
                granted=granted,
                granted_at=grant.granted_at if grant is not None else None,
                invited_by=inviters.get(telegram_id) if grant is not None else None,
                name=member.first_name if member else None,
                username=member.username if member else None,
                code=member.code if member else None,
            )
        )
    return sorted(entries, key=lambda e: (rank(e.role), e.telegram_id))


class RemoveOutcome(StrEnum):
    REMOVED = "removed"
    NOT_FOUND = "not_found"  # no member and no Telegram id by that reference
    NOT_STAFF = "not_staff"  # no role anywhere
    SETTINGS_ONLY = "settings_only"  # every role they hold comes from settings
    OWN = "own"  # an admin does not remove their own role: another admin does, so nobody locks themselves out
    OWNER = "owner"  # only an owner removes an owner


@dataclass(frozen=True)
class Removal:
    outcome: RemoveOutcome
    telegram_id: int | None = None
    removed: Role | None = None
    from_settings: frozenset[Role] = frozenset()
    now_role: Role = Role.MEMBER  # afterwards, from settings
    language: str | None = None  # the member's, for their command menu
    name: str | None = None


async def remove_role(
    session: AsyncSession,
    static: StaticRoles,
    *,
    ref: str,
    actor_id: int,
    actor_role: Role,
    now: datetime,
) -> Removal:
    """Take back the role someone holds in the database (``ref``: member code, Telegram id or @username; a Telegram
    id works for staff who never joined as members). Roles from settings stay."""
    member = await find_member(session, ref)
    telegram_id = member.telegram_id if member is not None else whole(ref)
    if telegram_id is None:
        return Removal(RemoveOutcome.NOT_FOUND)
    name = member.first_name if member is not None else None
    language = member.language if member is not None else None
    settings_roles = frozenset(static.roles_of(telegram_id))
    await begin_write(session)
    grant = await session.get(StaffRole, telegram_id)
    if grant is None:
        await session.rollback()
        outcome = RemoveOutcome.SETTINGS_ONLY if settings_roles else RemoveOutcome.NOT_STAFF
        if outcome is RemoveOutcome.NOT_STAFF and member is None:
            outcome = RemoveOutcome.NOT_FOUND
        return Removal(outcome, telegram_id, None, settings_roles, highest(set(settings_roles)), language, name)
    removed = Role(grant.role)
    refused = None
    if telegram_id == actor_id:
        refused = RemoveOutcome.OWN
    elif removed is Role.OWNER and actor_role is not Role.OWNER:
        refused = RemoveOutcome.OWNER
    if refused is not None:
        await session.rollback()
        return Removal(
            refused, telegram_id, removed, settings_roles, merge(static, telegram_id, removed), language, name
        )
    await session.delete(grant)
    _audit(
        session,
        actor_id=actor_id,
        action="staff_remove",
        member=member,
        detail=f"role={removed.value} user={telegram_id}",
        now=now,
    )
    await session.commit()
    return Removal(
        RemoveOutcome.REMOVED, telegram_id, removed, settings_roles, highest(set(settings_roles)), language, name
    )


class GrantOutcome(StrEnum):
    GRANTED = "granted"
    HELD = "held"  # they may do everything the role allows already: nothing changed
    SETTINGS = "settings"  # their role from settings outranks it and would hide it: nothing changed
    OWN = "own"  # nobody changes their own role
    OWNER = "owner"  # only an owner changes an owner's role


@dataclass(frozen=True)
class Grant:
    outcome: GrantOutcome
    now_role: Role  # afterwards, settings and database together
    previous: Role | None = None  # the role they held in the database before


async def grant_role(
    session: AsyncSession,
    static: StaticRoles,
    *,
    member_id: int,
    role: Role,
    actor_id: int,
    actor_role: Role,
    now: datetime,
) -> Grant:
    """Give a member a staff role (one of INVITABLE) directly, as opening an invitation would: the same refusals
    (a role they hold already, one their settings outrank), never one's own, an owner's only by an owner. Audited.
    Granting the same role again changes nothing."""
    if role not in INVITABLE:
        raise ValueError(f"{role!r} cannot be given")
    await begin_write(session)
    member = await session.get(Member, member_id)
    if member is None or member.erased_at is not None:
        await session.rollback()
        raise LookupError(member_id)
    telegram_id = member.telegram_id
    grant = await session.get(StaffRole, telegram_id)
    previous = Role(grant.role) if grant is not None else None
    current = merge(static, telegram_id, previous)
    refused = None
    if telegram_id == actor_id:
        refused = GrantOutcome.OWN
    elif previous is Role.OWNER and actor_role is not Role.OWNER:
        refused = GrantOutcome.OWNER
    elif previous is role or (previous is None and covers(current, role)):
        refused = GrantOutcome.HELD
    elif not covers(merge(static, telegram_id, role), role):
        refused = GrantOutcome.SETTINGS
    if refused is not None:
        await session.rollback()
        return Grant(refused, current, previous)
    if grant is None:
        grant = StaffRole(telegram_id=telegram_id, role=role.value, granted_at=now)
    else:
        grant.role, grant.granted_at = role.value, now
    session.add(grant)
    detail = f"role={role.value} user={telegram_id}" + (f" was={previous.value}" if previous else "")
    _audit(session, actor_id=actor_id, action="staff_grant", member=member, detail=detail, now=now)
    await session.commit()
    return Grant(GrantOutcome.GRANTED, merge(static, telegram_id, role), previous)
