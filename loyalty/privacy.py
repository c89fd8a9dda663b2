"""Members' control over their data and what the bot sends them: promotions, export, erasure, blocking.

Erasure removes what identifies a person (names, username, phone, birthday, favourites, the content they
shared, what they wrote to support and in surveys) and stops every message; the ledger, purchases and coupons
stay, tied to an anonymous member row, for the merchant's accounts. The Telegram id stays on that row so a
member who comes back is the same account: they cannot collect a second welcome bonus, and their points are
still theirs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.profile import birthday_of, favourites_of
from storage.database import begin_write
from storage.models import (
    Coupon,
    LedgerEntry,
    Member,
    Purchase,
    Referral,
    Reward,
    Submission,
    Survey,
    Thread,
    ThreadMessage,
    VipPayment,
)

EXPORT_FORMAT = 1


def can_message(member: Member) -> bool:
    """Whether the bot may send this member anything it was not asked for."""
    return member.blocked_at is None and member.erased_at is None


async def set_promotions(session: AsyncSession, member_id: int, on: bool) -> None:
    await begin_write(session)
    await session.execute(update(Member).where(col(Member.id) == member_id).values(promotions=on))
    await session.commit()


async def promotions_on(session: AsyncSession, member_id: int) -> bool:
    return bool((await session.execute(select(col(Member.promotions)).where(col(Member.id) == member_id))).scalar())


async def mark_blocked(session: AsyncSession, telegram_id: int, blocked: bool, now: datetime) -> bool:
    """Record that a member blocked the bot (or came back). True if a member's state changed."""
    await begin_write(session)
    column = col(Member.blocked_at)
    result = await session.execute(
        update(Member)
        .where(col(Member.telegram_id) == telegram_id, column.is_(None) if blocked else column.is_not(None))
        .values(blocked_at=now if blocked else None)
    )
    await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


async def export(session: AsyncSession, member_id: int) -> dict[str, Any]:
    """Everything the program holds about a member, as plain JSON-ready data."""
    member = await session.get(Member, member_id, populate_existing=True)
    if member is None:
        raise LookupError(member_id)
    referrer_code = None
    if member.referred_by_id is not None:
        referrer_code = (
            await session.execute(select(col(Member.code)).where(col(Member.id) == member.referred_by_id))
        ).scalar()
    ledger = (
        await session.execute(
            select(LedgerEntry).where(col(LedgerEntry.member_id) == member_id).order_by(col(LedgerEntry.id))
        )
    ).scalars()
    purchases = (
        await session.execute(select(Purchase).where(col(Purchase.member_id) == member_id).order_by(col(Purchase.id)))
    ).scalars()
    coupons = (
        await session.execute(
            select(Coupon, col(Reward.title))
            .join(Reward, col(Reward.id) == col(Coupon.reward_id))
            .where(col(Coupon.member_id) == member_id)
            .order_by(col(Coupon.id))
        )
    ).all()
    submissions = (
        await session.execute(
            select(Submission).where(col(Submission.member_id) == member_id).order_by(col(Submission.id))
        )
    ).scalars()
    messages = (
        await session.execute(
            select(ThreadMessage)
            .join(Thread, col(Thread.id) == col(ThreadMessage.thread_id))
            .where(col(Thread.member_id) == member_id)
            .order_by(col(ThreadMessage.id))
        )
    ).scalars()
    threads = (
        await session.execute(select(Thread).where(col(Thread.member_id) == member_id).order_by(col(Thread.id)))
    ).scalars()
    surveys = (
        await session.execute(select(Survey).where(col(Survey.member_id) == member_id).order_by(col(Survey.id)))
    ).scalars()
    invited = (
        await session.execute(select(Referral).where(col(Referral.referrer_id) == member_id).order_by(col(Referral.id)))
    ).scalars()
    payments = (
        await session.execute(
            select(VipPayment).where(col(VipPayment.member_id) == member_id).order_by(col(VipPayment.id))
        )
    ).scalars()
    birthday = birthday_of(member)
    return {
        "format": EXPORT_FORMAT,
        "profile": {
            "member_code": member.code,
            "telegram_id": member.telegram_id,
            "first_name": member.first_name,
            "last_name": member.last_name,
            "username": member.username,
            "language": member.language,
            "birthday": str(birthday) if birthday else None,
            "phone": member.phone,
            "favourite_categories": favourites_of(member),
            "promotions": member.promotions,
            "joined_at": _iso(member.joined_at),
            "points": member.points,
            "pending_points": member.pending_points,
            "lifetime_points": member.lifetime_points,
            "tier": member.tier,
            "referred_by": referrer_code,
        },
        "ledger": [
            {
                "kind": e.kind,
                "points": e.points,
                "remaining": e.remaining,
                "expires_at": _iso(e.expires_at),
                "reason": e.reason,
                "created_at": _iso(e.created_at),
            }
            for e in ledger
        ],
        "purchases": [
            {
                "receipt": p.external_id if p.source == "receipt" else None,
                "amount_minor": p.amount_minor,
                "currency": p.currency,
                "category": p.category,
                "items": p.items,
                "points": p.points,
                "pending_points": p.pending_points,
                "available_at": _iso(p.available_at),
                "refunded_minor": p.refunded_minor,
                "promotion": p.promotion,
                "occurred_at": _iso(p.occurred_at),
            }
            for p in purchases
        ],
        "coupons": [
            {
                "code": c.code,
                "reward": title,
                "points": c.points,
                "issued_at": _iso(c.issued_at),
                "expires_at": _iso(c.expires_at),
                "used_at": _iso(c.used_at),
            }
            for c, title in coupons
        ],
        "shared_content": [
            {
                "kind": s.kind,
                "content": s.content,
                "status": s.status,
                "reason": s.reason,
                "points": s.points,
                "created_at": _iso(s.created_at),
            }
            for s in submissions
        ],
        "feedback": {
            "threads": [
                {
                    "id": t.id,
                    "status": t.status,
                    "opened_at": _iso(t.opened_at),
                    "closed_at": _iso(t.closed_at),
                    "rating": t.rating,
                }
                for t in threads
            ],
            "messages": [
                {
                    "thread": m.thread_id,
                    "from": "you" if m.direction == "in" else "staff",
                    "kind": m.kind,
                    "text": m.text,
                    "created_at": _iso(m.created_at),
                }
                for m in messages
            ],
        },
        "surveys": [
            {
                "sent_at": _iso(s.sent_at),
                "score": s.score,
                "reason": s.reason,
                "answered_at": _iso(s.scored_at),
            }
            for s in surveys
        ],
        "referrals": [
            {
                "joined_at": _iso(r.created_at),
                "qualified_at": _iso(r.qualified_at),
                "points": r.referrer_points,
            }
            for r in invited
        ],
        "vip": {
            "until": _iso(member.vip_until),
            "payments": [
                {
                    "charge_id": v.telegram_payment_charge_id,
                    "stars": v.amount,
                    "days": v.period_days,
                    "paid_at": _iso(v.paid_at),
                    "refunded_at": _iso(v.refunded_at),
                }
                for v in payments
            ],
        },
    }


async def erase(session: AsyncSession, member_id: int, now: datetime) -> None:
    """Erase a member's personal data and stop all messages to them; idempotent."""
    await begin_write(session)
    await session.execute(
        update(Member)
        .where(col(Member.id) == member_id)
        .values(
            first_name="",
            last_name=None,
            username=None,
            phone=None,
            birth_year=None,
            birth_month=None,
            birth_day=None,
            favourites="",
            promotions=False,
            erased_at=now,
        )
    )
    # What they wrote or photographed is theirs; the link's digest stays so the same post is not paid twice.
    await session.execute(update(Submission).where(col(Submission.member_id) == member_id).values(content=""))
    threads = select(col(Thread.id)).where(col(Thread.member_id) == member_id)
    await session.execute(
        update(ThreadMessage).where(col(ThreadMessage.thread_id).in_(threads)).values(text=None, file_id=None)
    )
    await session.execute(update(Survey).where(col(Survey.member_id) == member_id).values(reason=None))
    await session.commit()
