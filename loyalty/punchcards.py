"""Punch cards: a stamp per qualifying purchase (or item); a full card issues its reward's coupon at once and a
new card starts. Stamping runs inside the purchase's unit of work, so it is exactly as idempotent as the
purchase; the stamps each purchase gave are recorded, so a refund takes them back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped
from sqlmodel import col

from loyalty.program import Program, PunchCardRule
from loyalty.rewards import gift_coupon
from storage.models import PunchCard, Purchase, Stamp


@dataclass(frozen=True)
class CardProgress:
    rule: PunchCardRule
    stamps: int
    added: int = 0
    filled: int = 0
    coupons: tuple[str, ...] = ()


def stamps_for(rule: PunchCardRule, purchase: Purchase) -> int:
    # A purchase qualifies in the card's category and when it earns at all (not below the minimum amount).
    if (purchase.category or "") != rule.category or purchase.base_points <= 0:
        return 0
    return purchase.items if rule.per == "item" else 1


async def _card(session: AsyncSession, member_id: int, key: str) -> PunchCard:
    card = (
        await session.execute(
            select(PunchCard).where(col(PunchCard.member_id) == member_id, col(PunchCard.card_key) == key)
        )
    ).scalar_one_or_none()
    if card is None:
        card = PunchCard(member_id=member_id, card_key=key)
        session.add(card)
    return card


async def stamp(session: AsyncSession, program: Program, purchase: Purchase, now: datetime) -> list[CardProgress]:
    """Stamp the member's cards for this purchase (inside the caller's unit of work; it commits)."""
    assert purchase.id is not None
    progress = []
    for rule in program.punch_cards:
        count = stamps_for(rule, purchase)
        if not count:
            continue
        card = await _card(session, purchase.member_id, rule.key)
        card.stamps += count
        filled, card.stamps = divmod(card.stamps, rule.stamps)
        card.completed += filled
        session.add(Stamp(purchase_id=purchase.id, card_key=rule.key, count=count))
        codes = [await _issue(session, rule, purchase, n, now) for n in range(filled)]
        progress.append(CardProgress(rule, card.stamps, count, filled, tuple(code for code in codes if code)))
    await session.flush()
    return progress


async def _issue(session: AsyncSession, rule: PunchCardRule, purchase: Purchase, n: int, now: datetime) -> str | None:
    coupon = await gift_coupon(
        session, purchase.member_id, rule.reward, key=f"punch:{purchase.id}:{rule.key}:{n}", now=now
    )
    return coupon.code if coupon is not None else None


async def unstamp(session: AsyncSession, purchase: Purchase, share: tuple[int, int]) -> None:
    """Take back the stamps of a refunded share (refunded, total) of a purchase; a filled card stays filled."""
    refunded, total = share
    for given in (await session.execute(select(Stamp).where(col(Stamp.purchase_id) == purchase.id))).scalars():
        keep = -(-given.count * (total - refunded) // total)  # rounded up: a stamp goes with a full refund
        if keep == given.count:
            continue
        card = await _card(session, purchase.member_id, given.card_key)
        card.stamps = max(0, card.stamps - (given.count - keep))
        given.count = keep
        session.add_all([card, given])
    await session.flush()


def stamps_column(card_key: str, member_id: ColumnElement[Any] | Mapped[Any]) -> ColumnElement[Any]:
    """A scalar subquery for the stamps on the member's current card of this kind (NULL: none yet)."""
    return (
        select(col(PunchCard.stamps))
        .where(
            col(PunchCard.member_id) == member_id,
            col(PunchCard.card_key) == card_key,
        )
        .scalar_subquery()
    )


_STAMPS = select(col(PunchCard.card_key), col(PunchCard.stamps)).where(
    col(PunchCard.member_id) == bindparam("member_id", type_=Integer)
)


async def progress_of(session: AsyncSession, program: Program, member_id: int) -> list[CardProgress]:
    if not program.punch_cards:
        return []
    rows = await (await session.connection()).execute(_STAMPS, {"member_id": member_id})
    stamps = {key: count for key, count in rows}
    return [CardProgress(rule, stamps.get(rule.key, 0)) for rule in program.punch_cards]
