"""The rewards catalog, redeeming points for single-use coupons, and using a coupon at the till.

A redemption is one unit of work: spend the points (conditional update on the member row, lots drawn
soonest-expiry first), check the per-member limit while holding that row, take one from stock with a
conditional update, and issue the coupon under a UNIQUE idempotency key. Concurrent confirmations therefore
serialise on the member row (PostgreSQL) or the write lock (SQLite); a replay finds the coupon it made.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.codes import CODE_ALPHABET
from loyalty.ledger import Kind, credit, debit, find_by_key
from loyalty.numbers import whole
from loyalty.program import Program, RewardRule, localized
from loyalty.tiers import rank
from storage.database import begin_write
from storage.models import Coupon, Member, Reward

COUPON_LENGTH = 10


class Unavailable(StrEnum):
    UNKNOWN = "unknown"
    DISABLED = "disabled"
    OUT_OF_STOCK = "out_of_stock"
    LIMIT_REACHED = "limit_reached"
    TIER_TOO_LOW = "tier_too_low"


class RewardUnavailable(Exception):
    def __init__(self, reason: Unavailable) -> None:
        super().__init__(reason.value)
        self.reason = reason


def new_coupon_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(COUPON_LENGTH))


def normalize_coupon_code(text: str) -> str | None:
    """A coupon code as a cashier types it (any case, spaces, dashes) in canonical form, or None."""
    code = "".join(ch for ch in text if ch not in " -\t").upper()
    return code if len(code) == COUPON_LENGTH and all(ch in CODE_ALPHABET for ch in code) else None


def title_for(reward: Reward, language: str) -> str:
    return localized(language, reward.title, reward.title_zh_hans, reward.title_zh_hant)


async def coupon_title(session: AsyncSession, coupon: Coupon, language: str) -> str:
    """The title of the reward a coupon is for, in the member's language ("" if the reward is gone)."""
    reward = await session.get(Reward, coupon.reward_id)
    return title_for(reward, language) if reward else ""


async def sync_catalog(session: AsyncSession, program: Program) -> None:
    """Create or update the program file's rewards; one removed from the file is disabled, not deleted.

    Workers started together on a fresh PostgreSQL database each find no rewards and each create them: all but
    one fail on the unique key, try again, and then find the rows the first one made."""
    try:
        await _sync_catalog(session, program)
    except IntegrityError:
        await session.rollback()
        await _sync_catalog(session, program)


async def _existing_rewards(session: AsyncSession) -> dict[str, Reward]:
    return {r.key: r for r in (await session.execute(select(Reward))).scalars()}


async def _sync_catalog(session: AsyncSession, program: Program) -> None:
    await begin_write(session)
    existing = await _existing_rewards(session)
    keys = set()
    for rule in program.rewards:
        keys.add(rule.key)
        reward = existing.get(rule.key) or Reward(key=rule.key, title=rule.title, cost=rule.cost, from_file=True)
        _apply(reward, rule)
        session.add(reward)
    for key, reward in existing.items():
        if reward.from_file and key not in keys:
            reward.active = False
            session.add(reward)
    await session.commit()


def _apply(reward: Reward, rule: RewardRule) -> None:
    reward.title, reward.title_zh_hans, reward.title_zh_hant = rule.title, rule.title_zh_hans, rule.title_zh_hant
    reward.cost, reward.per_member_limit, reward.validity_days = rule.cost, rule.per_member_limit, rule.validity_days
    reward.min_tier = rule.min_tier
    if reward.id is None:  # stock in the file is the starting stock; redemptions count it down from there
        reward.stock = rule.stock
    reward.active, reward.from_file = True, True


async def catalog(session: AsyncSession, *, include_disabled: bool = False) -> list[Reward]:
    query = select(Reward).order_by(col(Reward.cost), col(Reward.id))
    if not include_disabled:
        query = query.where(col(Reward.active))
    return list((await session.execute(query)).scalars())


async def find_reward(session: AsyncSession, ref: str) -> Reward | None:
    """A reward by numeric id or key."""
    reward_id = whole(ref)
    query = (
        select(Reward).where(col(Reward.id) == reward_id)
        if reward_id is not None
        else select(Reward).where(col(Reward.key) == ref.lower())
    )
    return (await session.execute(query)).scalar_one_or_none()


async def add_reward(
    session: AsyncSession,
    *,
    title: str,
    cost: int,
    stock: int | None,
    per_member_limit: int | None,
    validity_days: int,
    min_tier: str | None = None,
) -> Reward:
    await begin_write(session)
    reward = Reward(
        key=f"r{secrets.token_hex(4)}",
        title=title,
        cost=cost,
        stock=stock,
        per_member_limit=per_member_limit,
        validity_days=validity_days,
        min_tier=min_tier,
    )
    session.add(reward)
    await session.commit()
    return reward


async def set_active(session: AsyncSession, reward_id: int, active: bool) -> None:
    await begin_write(session)
    await session.execute(update(Reward).where(col(Reward.id) == reward_id).values(active=active))
    await session.commit()


# A reward's title in each language members read: the column that holds it.
TITLE_COLUMNS = {"en": "title", "zh-hans": "title_zh_hans", "zh-hant": "title_zh_hant"}
MAX_TITLE = 64


async def set_title(session: AsyncSession, reward: Reward, language: str, title: str) -> None:
    """Give a reward made in chat its title in one language (``TITLE_COLUMNS``; a file's rewards take theirs from
    the file at every start, so they are not changed here)."""
    column = TITLE_COLUMNS[language.lower()]
    if reward.from_file:
        raise ValueError("a program file's reward takes its titles from the file")
    await begin_write(session)
    await session.execute(update(Reward).where(col(Reward.id) == reward.id).values({column: title[:MAX_TITLE]}))
    await session.commit()


@dataclass(frozen=True)
class Redemption:
    coupon: Coupon
    reward: Reward
    balance: int
    created: bool


def tier_allows(program: Program, reward: Reward, tier: str | None) -> bool:
    return reward.min_tier is None or rank(program, tier) >= rank(program, reward.min_tier)


async def redeem(
    session: AsyncSession, *, member_id: int, reward_id: int, key: str, now: datetime, program: Program | None = None
) -> Redemption:
    """Spend points on a reward, once per ``key``. Raises RewardUnavailable or InsufficientPoints."""
    await begin_write(session)
    if (done := await _by_key(session, key)) is not None:
        return await _replayed(session, done)
    reward = await session.get(Reward, reward_id)
    if reward is None:
        raise RewardUnavailable(Unavailable.UNKNOWN)
    if not reward.active:
        raise RewardUnavailable(Unavailable.DISABLED)
    if program is not None and reward.min_tier is not None:
        member = await session.get(Member, member_id)
        if member is None or not tier_allows(program, reward, member.tier):
            raise RewardUnavailable(Unavailable.TIER_TOO_LOW)
    try:
        entry, balance = await debit(
            session, member_id, reward.cost, kind=Kind.SPEND, now=now, reason=reward.title[:256]
        )
        if reward.per_member_limit is not None:
            taken = (
                await session.execute(
                    select(func.count()).where(col(Coupon.member_id) == member_id, col(Coupon.reward_id) == reward_id)
                )
            ).scalar_one()
            if taken >= reward.per_member_limit:
                raise RewardUnavailable(Unavailable.LIMIT_REACHED)
        in_stock = await session.execute(
            update(Reward)
            .where(col(Reward.id) == reward_id, or_(col(Reward.stock).is_(None), col(Reward.stock) > 0))
            .values(stock=col(Reward.stock) - 1)
        )
        if in_stock.rowcount == 0:  # type: ignore[attr-defined]
            raise RewardUnavailable(Unavailable.OUT_OF_STOCK)
        coupon = Coupon(
            code=await _unused_code(session),
            member_id=member_id,
            reward_id=reward_id,
            points=reward.cost,
            ledger_entry_id=entry.id,
            idempotency_key=key,
            issued_at=now,
            expires_at=now + timedelta(days=reward.validity_days),
        )
        session.add(coupon)
        await session.commit()
    except IntegrityError:
        # The same confirmation raced with itself; the first one's coupon stands.
        await session.rollback()
        if (done := await _by_key(session, key)) is None:
            raise
        return await _replayed(session, done)
    except BaseException:
        await session.rollback()
        raise
    return Redemption(coupon, reward, balance, created=True)


async def _by_key(session: AsyncSession, key: str) -> Coupon | None:
    return (await session.execute(select(Coupon).where(col(Coupon.idempotency_key) == key))).scalar_one_or_none()


async def _replayed(session: AsyncSession, coupon: Coupon) -> Redemption:
    reward = await session.get(Reward, coupon.reward_id)
    member = await session.get(Member, coupon.member_id)
    assert reward is not None and member is not None
    return Redemption(coupon, reward, member.points, created=False)


async def _unused_code(session: AsyncSession) -> str:
    while True:
        code = new_coupon_code()
        if not (await session.execute(select(func.count()).where(col(Coupon.code) == code))).scalar_one():
            return code


async def gift_coupon(
    session: AsyncSession, member_id: int, reward_key: str, *, key: str, now: datetime, days: int | None = None
) -> Coupon | None:
    """A free coupon for a reward from the program file (a full punch card, a birthday, a win-back offer), inside
    the caller's unit of work. The same ``key`` again returns the coupon it made; None if the reward is gone."""
    if (done := await _by_key(session, key)) is not None:
        return done
    reward = (await session.execute(select(Reward).where(col(Reward.key) == reward_key))).scalar_one_or_none()
    if reward is None or reward.id is None:
        return None
    coupon = Coupon(
        code=await _unused_code(session),
        member_id=member_id,
        reward_id=reward.id,
        points=0,
        idempotency_key=key,
        issued_at=now,
        expires_at=now + timedelta(days=days if days is not None else reward.validity_days),
    )
    session.add(coupon)
    await session.flush()
    return coupon


@dataclass(frozen=True)
class Gift:
    points: int
    coupon: Coupon | None


async def give_gift(
    session: AsyncSession,
    program: Program,
    member_id: int,
    *,
    key: str,
    kind: str,
    points: int,
    reward: str | None,
    coupon_days: int | None,
    now: datetime,
) -> Gift:
    """Bonus points and a coupon for one occasion (a birthday, a month of VIP), committed. The same ``key``
    again gives nothing more and returns what it gave, so a job run twice, or by two schedulers, gives once."""
    await begin_write(session)
    if points and await find_by_key(session, key) is None:
        await credit(session, member_id, points, kind=kind, now=now, expires_at=program.expires_at(now), key=key)
    coupon = await gift_coupon(session, member_id, reward, key=key, now=now, days=coupon_days) if reward else None
    await session.commit()
    return Gift(points, coupon)


async def coupons_of(session: AsyncSession, member_id: int, now: datetime) -> list[tuple[Coupon, Reward]]:
    """The member's coupons that can still be used, soonest expiry first."""
    rows = await session.execute(
        select(Coupon, Reward)
        .join(Reward, col(Reward.id) == col(Coupon.reward_id))
        .where(col(Coupon.member_id) == member_id, col(Coupon.used_at).is_(None), col(Coupon.expires_at) > now)
        .order_by(col(Coupon.expires_at))
    )
    return [(coupon, reward) for coupon, reward in rows]


class CouponProblem(StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    DISABLED = "disabled"
    WRONG_STORE = "wrong_store"  # the reward is limited to other stores ([[rewards]] stores)


@dataclass(frozen=True)
class CouponUse:
    coupon: Coupon | None
    reward: Reward | None
    problem: CouponProblem | None
    owner: Member | None = None  # whose coupon it is: the cashier says whose they accepted


async def use_coupon(
    session: AsyncSession,
    code: str,
    *,
    cashier_id: int,
    now: datetime,
    program: Program | None = None,
    store: str | None = None,
) -> CouponUse:
    """Mark a coupon used at the till of ``store``, once: the conditional update makes a second scan a clear
    "used". A reward the ``program`` limits to other stores is refused there."""
    await begin_write(session)
    row = (
        await session.execute(
            select(Coupon, Reward, Member)
            .join(Reward, col(Reward.id) == col(Coupon.reward_id))
            .join(Member, col(Member.id) == col(Coupon.member_id))
            .where(col(Coupon.code) == code)
        )
    ).first()
    if row is None:
        await session.commit()
        return CouponUse(None, None, CouponProblem.UNKNOWN)
    coupon, reward, owner = row
    problem = None
    if coupon.used_at is not None:
        problem = CouponProblem.USED
    elif coupon.expires_at <= now:
        problem = CouponProblem.EXPIRED
    elif not reward.active:
        problem = CouponProblem.DISABLED
    elif program is not None and not program.accepted_at(reward.key, store):
        problem = CouponProblem.WRONG_STORE
    else:
        marked = await session.execute(
            update(Coupon)
            .where(col(Coupon.id) == coupon.id, col(Coupon.used_at).is_(None))
            .values(used_at=now, used_by=cashier_id, used_store=store)
        )
        if marked.rowcount == 0:  # type: ignore[attr-defined]  # another till was a moment faster
            problem = CouponProblem.USED
        else:
            coupon.used_at, coupon.used_by, coupon.used_store = now, cashier_id, store
    await session.commit()
    return CouponUse(coupon, reward, problem, owner)
