"""How many points a purchase earns, and why: the one place the earning rules are evaluated.

Stacking rule: the base is ``amount × points_per_unit × multiplier`` (the tier's, combined with a paid VIP's: see
``loyalty.vip.earn_multiplier``) rounded by the program's rule
(nothing below the minimum amount). Of all promotions that match — from the program file and campaigns
started from chat — exactly one applies: the one that adds the most points (a multiplier adds
``base × (m − 1)``, a bonus adds its points); ties go to the one listed first, file before campaigns.
Promotions never stack with each other, so a merchant can reason about the worst case of any day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.program import WEEKDAYS, Program, PromotionRule
from storage.models import Campaign, Purchase


@dataclass(frozen=True)
class Offer:
    """A promotion as evaluated: its rule and, for campaigns, the exact window it runs in (UTC)."""

    rule: PromotionRule
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    campaign: Campaign | None = None


@dataclass(frozen=True)
class Earning:
    base: int
    total: int
    promotion: str | None = None
    detail: str | None = None  # "×2" or "+50", for the member's explanation
    campaign: Campaign | None = None  # the campaign started in chat that applied, if one did

    @property
    def extra(self) -> int:
        return self.total - self.base


@dataclass(frozen=True)
class Basket:
    amount: Decimal
    category: str | None
    items: int
    at: datetime  # UTC
    tier_multiplier: Decimal = Decimal(1)
    store: str | None = None  # where it was recorded: promotions limited to stores, and that store's clock


def _matches(offer: Offer, basket: Basket, program: Program) -> bool:
    rule, local = offer.rule, basket.at.astimezone(program.store_tz(basket.store))
    if offer.valid_from is not None and basket.at < offer.valid_from:
        return False
    if offer.valid_until is not None and basket.at >= offer.valid_until:
        return False
    checks = [
        rule.starts is None or local.date() >= rule.starts,
        rule.ends is None or local.date() <= rule.ends,
        rule.weekdays is None or WEEKDAYS[local.weekday()] in rule.weekdays,
        rule.start_time is None or rule.end_time is None or rule.start_time <= local.time() < rule.end_time,
        rule.categories is None or (basket.category or "") in rule.categories,
        rule.min_amount is None or basket.amount >= rule.min_amount,
        rule.min_items is None or basket.items >= rule.min_items,
        rule.stores is None or basket.store in rule.stores,
    ]
    return all(checks)


def _extra(rule: PromotionRule, base: int) -> int:
    if rule.multiplier is not None:
        return int((base * (rule.multiplier - 1)).to_integral_value(rounding=ROUND_FLOOR))
    return rule.bonus or 0


def _detail(rule: PromotionRule) -> str:
    return f"×{rule.multiplier.normalize()}" if rule.multiplier is not None else f"+{rule.bonus}"


def period_start(at: datetime, period: str, program: Program) -> datetime:
    """Start (UTC) of the local calendar day, week (from Monday) or month containing ``at``."""
    local = at.astimezone(program.tz).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        local -= timedelta(days=local.weekday())
    elif period == "month":
        local = local.replace(day=1)
    return local.astimezone(at.tzinfo)


def campaign_rule(campaign: Campaign) -> PromotionRule:
    return PromotionRule(
        name=campaign.name,
        multiplier=Decimal(campaign.multiplier) if campaign.multiplier else None,
        bonus=campaign.bonus,
        categories=[campaign.category] if campaign.category else None,
    )


async def active_offers(session: AsyncSession, program: Program, now: datetime) -> list[Offer]:
    offers = [Offer(rule) for rule in program.promotions]
    campaigns = await session.execute(
        select(Campaign).where(col(Campaign.ended_at).is_(None), col(Campaign.ends_at) > now).order_by(col(Campaign.id))
    )
    offers += [Offer(campaign_rule(c), c.starts_at, c.ends_at, c) for c in campaigns.scalars()]
    return offers


async def earning_for(session: AsyncSession, program: Program, member_id: int, basket: Basket) -> Earning:
    base = program.earn.points_for(basket.amount, basket.tier_multiplier)
    if basket.amount < program.earn.minimum_amount:  # below the qualifying amount nothing applies
        return Earning(0, 0)
    best: tuple[int, Offer] | None = None
    for offer in await active_offers(session, program, basket.at):
        if not _matches(offer, basket, program):
            continue
        extra = _extra(offer.rule, base)
        if extra <= 0 or (best is not None and extra <= best[0]):
            continue
        if offer.rule.limit_per_member is not None and await _limit_reached(
            session, program, member_id, offer.rule, basket.at
        ):
            continue
        best = (extra, offer)
    if best is None:
        return Earning(base, base)
    extra, chosen = best
    return Earning(base, base + extra, chosen.rule.name, _detail(chosen.rule), chosen.campaign)


async def _limit_reached(
    session: AsyncSession, program: Program, member_id: int, rule: PromotionRule, at: datetime
) -> bool:
    since = period_start(at, rule.limit_period, program)
    used = (
        await session.execute(
            select(func.count()).where(
                col(Purchase.member_id) == member_id,
                col(Purchase.promotion) == rule.name,
                col(Purchase.occurred_at) >= since,
            )
        )
    ).scalar_one()
    return int(used) >= (rule.limit_per_member or 0)
