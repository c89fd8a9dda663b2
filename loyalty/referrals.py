"""Referrals: a friend joins through a member's link; both are paid only for a real customer.

Rules, each enforced here and nowhere else:

- A friend is linked once, at the moment they join (UNIQUE friend). Someone who is already a member, the
  referrer themselves, or an unknown code links nothing; since only new members are linked, a loop
  (A invites B, then B "invites" A) cannot form.
- The friend's bonus is paid on joining or with their first qualifying purchase (program file); the
  referrer's bonus only with the friend's first qualifying purchase (at least ``qualifying_amount``),
  never for the join alone.
- A referrer is paid for at most ``monthly_cap`` friends per calendar month (program timezone); a friend
  who qualifies beyond the cap is recorded as capped and pays nothing.
- More than ``burst_limit`` joins through one link within an hour: the extra joins are held for staff
  review and pay nothing until approved; a rejection pays nothing ever.
- Each bonus is a ledger entry with its own idempotency key, so replays and any order of purchase and
  review pay each at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty import missions
from loyalty.codes import normalize_code
from loyalty.earning import period_start
from loyalty.ledger import Kind, claw_back, credit
from loyalty.program import Program
from storage.database import begin_write, insert_once
from storage.models import Member, Purchase, Referral, ReferralVisit

PREFIX = "ref_"
BURST_WINDOW = timedelta(hours=1)


class Review(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class LinkProblem(StrEnum):
    """Why opening a referral link linked nothing (the member still joins or returns as usual)."""

    OWN_LINK = "own_link"
    ALREADY_MEMBER = "already_member"
    UNKNOWN_CODE = "unknown_code"


def payload_for(code: str) -> str:
    """The ``/start`` payload of a member's link: 12 characters, well within Telegram's 64."""
    return PREFIX + code


def is_referral_payload(payload: str | None) -> bool:
    return payload is not None and payload.startswith(PREFIX)


def referral_code(payload: str | None) -> str | None:
    """The member code inside a ``/start ref_<code>`` payload, or None for anything else (a forged update can
    carry far more than Telegram's 64 characters)."""
    if not is_referral_payload(payload) or payload is None or len(payload) > 64:
        return None
    return normalize_code(payload[len(PREFIX) :])


@dataclass(frozen=True)
class Linked:
    """What joining through a link did."""

    referral: Referral | None
    referrer: Member | None
    problem: LinkProblem | None = None
    friend_points: int = 0

    @property
    def held(self) -> bool:
        return self.referral is not None and self.referral.review == Review.PENDING


@dataclass(frozen=True)
class Payout:
    """Bonuses paid (or refused by the cap) by one step of a referral: a qualifying purchase or an approval."""

    referral: Referral
    referrer: Member
    friend: Member
    friend_points: int
    referrer_points: int
    capped: bool


async def _referrer_by_code(session: AsyncSession, code: str | None) -> Member | None:
    if code is None:
        return None
    referrer = (await session.execute(select(Member).where(col(Member.code) == code))).scalar_one_or_none()
    # An erased member's link is dead: nobody is left to reward or to tell.
    return referrer if referrer is not None and referrer.erased_at is None else None


async def on_start(
    session: AsyncSession, program: Program, member: Member, code: str | None, *, created: bool, now: datetime
) -> Linked:
    """Called inside the join's unit of work when ``/start`` carried a referral payload (``code`` None if the
    payload was malformed)."""
    await begin_write(session)
    referrer = await _referrer_by_code(session, code)
    if referrer is None:
        return Linked(None, None, LinkProblem.UNKNOWN_CODE)
    assert referrer.id is not None and member.id is not None
    if referrer.id == member.id:
        return Linked(None, referrer, LinkProblem.OWN_LINK)
    await insert_once(session, ReferralVisit, referrer_id=referrer.id, telegram_id=member.telegram_id, created_at=now)
    if not created:
        return Linked(None, referrer, LinkProblem.ALREADY_MEMBER)
    recent = (
        await session.execute(
            select(func.count())
            .select_from(Referral)
            .where(col(Referral.referrer_id) == referrer.id, col(Referral.created_at) > now - BURST_WINDOW)
        )
    ).scalar_one()
    rules = program.referrals
    referral = Referral(
        referrer_id=referrer.id,
        friend_id=member.id,
        created_at=now,
        review=Review.PENDING if recent >= rules.burst_limit else None,
    )
    member.referred_by_id = referrer.id
    session.add_all([referral, member])
    await session.flush()
    paid = 0
    if referral.review is None and rules.friend_bonus_on == "join":
        paid = await _pay_friend(session, program, referral, now)
    return Linked(referral, referrer, friend_points=paid)


async def on_purchase(session: AsyncSession, program: Program, purchase: Purchase, now: datetime) -> Payout | None:
    """Called inside the purchase's unit of work: the friend's first qualifying purchase pays the bonuses."""
    referral = (
        await session.execute(
            select(Referral)
            .where(col(Referral.friend_id) == purchase.member_id, col(Referral.qualified_at).is_(None))
            .with_for_update()  # two purchases of the friend at once: one qualifies
        )
    ).scalar_one_or_none()
    if referral is None:
        return None
    minimum = int(program.referrals.qualifying_amount.scaleb(program.minor_digits))
    if purchase.amount_minor < minimum:
        return None
    referral.qualified_at, referral.purchase_id = now, purchase.id
    session.add(referral)
    await session.flush()
    if referral.review in (Review.PENDING, Review.REJECTED):
        return None  # a held referral pays when staff approve it; a rejected one never
    return await _pay(session, program, referral, now)


def _occasion(referral: Referral) -> str:
    """What a bonus is paid for, in its ledger key: the join, or one qualifying purchase (a refunded one can be
    followed by another, which must not collide with the first's key)."""
    return f"purchase-{referral.purchase_id}" if referral.purchase_id is not None else "join"


async def _pay_friend(session: AsyncSession, program: Program, referral: Referral, now: datetime) -> int:
    bonus = program.referrals.friend_bonus
    if not bonus or referral.friend_points:
        return 0
    occasion = "join" if program.referrals.friend_bonus_on == "join" else _occasion(referral)
    await credit(
        session,
        referral.friend_id,
        bonus,
        kind=Kind.REFERRAL,
        now=now,
        expires_at=program.expires_at(now),
        key=f"referral-friend:{referral.id}:{occasion}",
    )
    referral.friend_points = bonus
    session.add(referral)
    return bonus


async def _pay(session: AsyncSession, program: Program, referral: Referral, now: datetime) -> Payout:
    """Pay whatever is due now and was not paid before."""
    rules = program.referrals
    friend_points = 0
    if rules.friend_bonus_on == "join" or referral.qualified_at is not None:
        friend_points = await _pay_friend(session, program, referral, now)
    referrer_points, capped = 0, False
    if (
        referral.qualified_at is not None
        and referral.referrer_paid_at is None
        and not referral.capped
        and rules.referrer_bonus
    ):
        paid_this_month = (
            await session.execute(
                select(func.count())
                .select_from(Referral)
                .where(
                    col(Referral.referrer_id) == referral.referrer_id,
                    col(Referral.referrer_paid_at) >= period_start(now, "month", program),
                )
            )
        ).scalar_one()
        if paid_this_month >= rules.monthly_cap:
            referral.capped = capped = True
        else:
            await credit(
                session,
                referral.referrer_id,
                rules.referrer_bonus,
                kind=Kind.REFERRAL,
                now=now,
                expires_at=program.expires_at(now),
                key=f"referral:{referral.id}:{_occasion(referral)}",
            )
            referral.referrer_points = referrer_points = rules.referrer_bonus
            referral.referrer_paid_at = now
        session.add(referral)
    await session.flush()
    referrer = await session.get(Member, referral.referrer_id)
    friend = await session.get(Member, referral.friend_id)
    assert referrer is not None and friend is not None
    return Payout(referral, referrer, friend, friend_points, referrer_points, capped)


async def on_refund(session: AsyncSession, program: Program, purchase: Purchase, now: datetime) -> Referral | None:
    """Called inside a refund's unit of work. When the referral's qualifying purchase is refunded below the
    qualifying amount, the bonuses it paid are taken back and the friend can qualify again with a later purchase:
    otherwise buying and returning would farm referral points."""
    referral = (
        await session.execute(select(Referral).where(col(Referral.purchase_id) == purchase.id))
    ).scalar_one_or_none()
    minimum = int(program.referrals.qualifying_amount.scaleb(program.minor_digits))
    if referral is None or purchase.amount_minor - purchase.refunded_minor >= minimum:
        return None
    takebacks = [(referral.referrer_id, referral.referrer_points)]
    if program.referrals.friend_bonus_on == "first_purchase":
        takebacks.append((referral.friend_id, referral.friend_points))
        referral.friend_points = 0
    for member_id, points in takebacks:
        if points:
            await claw_back(
                session,
                member_id,
                points,
                now=now,
                from_lots=[],
                purchase_id=purchase.id,
                key=f"referral-refund:{referral.id}:{member_id}:{purchase.id}",
                reason="referral refunded",
            )
    referral.qualified_at = referral.purchase_id = referral.referrer_paid_at = None
    referral.referrer_points, referral.capped = 0, False
    session.add(referral)
    await session.flush()
    return referral


@dataclass(frozen=True)
class Decision:
    referral: Referral
    changed: bool  # False: somebody decided already (a double tap or a second moderator); nothing was done
    payout: Payout | None


async def review(
    session: AsyncSession, program: Program, referral_id: int, *, approve: bool, actor_id: int, now: datetime
) -> Decision | None:
    """Approve or reject a held referral, once. None if there is no such referral."""
    await begin_write(session)
    decided = (
        await session.execute(
            update(Referral)
            .where(col(Referral.id) == referral_id, col(Referral.review) == Review.PENDING)
            .values(review=Review.APPROVED if approve else Review.REJECTED, reviewed_by=actor_id)
        )
    ).rowcount  # type: ignore[attr-defined]
    referral = await session.get(Referral, referral_id, populate_existing=True)
    if referral is None:
        await session.rollback()
        return None
    payout = await _pay(session, program, referral, now) if decided and approve else None
    if payout is not None:
        await missions.evaluate(session, program, referral.referrer_id, now, goals=("referrals",))
    await session.commit()
    return Decision(referral, bool(decided), payout)


@dataclass(frozen=True)
class Stats:
    invited: int  # people who opened the link
    joined: int  # of them, new members linked to the referrer
    qualified: int  # of them, made a qualifying purchase (and were not rejected)
    points: int  # the referrer's bonuses paid


async def stats(session: AsyncSession, member_id: int) -> Stats:
    invited = (
        await session.execute(
            select(func.count()).select_from(ReferralVisit).where(col(ReferralVisit.referrer_id) == member_id)
        )
    ).scalar_one()
    joined, qualified, points = (
        await session.execute(
            select(
                func.count(),
                func.count(col(Referral.qualified_at)).filter(
                    func.coalesce(col(Referral.review), "") != Review.REJECTED
                ),
                func.coalesce(func.sum(col(Referral.referrer_points)), 0),
            ).where(col(Referral.referrer_id) == member_id)
        )
    ).one()
    return Stats(int(invited), int(joined), int(qualified), int(points))


async def pending_referral(session: AsyncSession, referral_id: int) -> tuple[Referral, Member, Member] | None:
    """A referral with both members, for the review message."""
    referral = await session.get(Referral, referral_id)
    if referral is None:
        return None
    referrer = await session.get(Member, referral.referrer_id)
    friend = await session.get(Member, referral.friend_id)
    assert referrer is not None and friend is not None
    return referral, referrer, friend
