"""The audit log: what staff did to members' points, and what they were refused.

Staff may not record purchases, refunds or adjustments on their own member account: a cashier could otherwise
buy themselves points, or pay a friend's referral bonus with a purchase of their own. The attempt is written to
the audit log, which admins read with /audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import AuditLog, Member

OWN_PREFIX = "own_"  # an action refused because the actor is the member, e.g. "own_purchase"


class OwnAccount(Exception):
    """The member is the staff member asking: nothing was changed; the attempt is in the audit log."""

    def __init__(self, action: str) -> None:
        super().__init__(action)
        self.action = action


async def refuse_own_account(
    session: AsyncSession, *, actor_id: int | None, member: Member, action: str, detail: str, now: datetime
) -> None:
    """Inside a unit of work, before it changes anything: if the actor is the member, write the attempt to the
    audit log, commit it, and raise OwnAccount."""
    if actor_id is None or actor_id != member.telegram_id:
        return
    session.add(
        AuditLog(
            actor_id=actor_id,
            action=f"{OWN_PREFIX}{action}"[:32],
            member_id=member.id,
            detail=detail[:512],
            created_at=now,
        )
    )
    await session.commit()
    raise OwnAccount(action)


@dataclass(frozen=True)
class AuditLine:
    entry: AuditLog
    member_code: str | None


async def latest(session: AsyncSession, limit: int = 20) -> list[AuditLine]:
    """The newest entries first, with the member's code."""
    rows = (
        await session.execute(
            select(AuditLog, col(Member.code))
            .outerjoin(Member, col(Member.id) == col(AuditLog.member_id))
            .order_by(col(AuditLog.created_at).desc(), col(AuditLog.id).desc())
            .limit(limit)
        )
    ).all()
    return [AuditLine(entry, code) for entry, code in rows]
