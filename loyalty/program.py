"""The merchant's program file: a TOML document validated with pydantic.

Every section is its own model with ``extra="forbid"`` so a typo in a key is reported by name instead of being
silently ignored. Later features add sections here; each has defaults so older files keep loading.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import get_currency_precision
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

EXAMPLE_PROGRAM = Path(__file__).with_name("program.example.toml")

# A reward's limits, the same in the program file and in /reward add.
MAX_REWARD_COST = 10_000_000
DEFAULT_VALIDITY_DAYS = 30  # how long a redeemed coupon stays valid unless the reward says otherwise
MAX_VALIDITY_DAYS = 3650
_ROUNDING = {"down": ROUND_FLOOR, "nearest": ROUND_HALF_UP, "up": ROUND_CEILING}


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


class ProgramError(ValueError):
    """The program file cannot be used; the message names the key and the reason."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EarnRules(_Section):
    points_per_unit: Decimal = Field(default=Decimal(1), gt=0)
    rounding: Literal["down", "nearest", "up"] = "down"
    minimum_amount: Decimal = Field(default=Decimal(0), ge=0)
    maximum_amount: Decimal = Field(default=Decimal(100000), gt=0)
    # Purchase categories a cashier may type besides those promotions, punch cards and favourites name.
    categories: list[Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]] = Field(default_factory=list)
    # The return window: a purchase's points are pending this many days before they can be spent (0: at once).
    pending_days: int = Field(default=0, ge=0, le=365)

    def points_for(self, amount: Decimal, multiplier: Decimal = Decimal(1)) -> int:
        if amount < self.minimum_amount:
            return 0
        raw = amount * self.points_per_unit * multiplier
        return int(raw.quantize(Decimal(1), rounding=_ROUNDING[self.rounding]))


class WelcomeRules(_Section):
    bonus: int = Field(default=0, ge=0)


class ExpiryRules(_Section):
    """When earned points expire: N days after earning, at the end of the month N months later, or never."""

    policy: Literal["days", "end_of_month", "never"] = "never"
    days: int | None = Field(default=None, gt=0)
    months: int | None = Field(default=None, ge=0)
    warn_days: int = Field(default=7, ge=0, le=365)  # warn members this many days before points expire; 0: never

    @model_validator(mode="after")
    def _amount_needed(self) -> ExpiryRules:
        if self.policy == "days" and self.days is None:
            raise ValueError('policy "days" needs days = N')
        if self.policy == "end_of_month" and self.months is None:
            raise ValueError('policy "end_of_month" needs months = N (0 = the end of the month of earning)')
        return self

    def expires_at(self, earned_at: datetime, tz: ZoneInfo) -> datetime | None:
        """When a lot earned at ``earned_at`` expires (UTC), or None for never.

        "End of month" is the end of that calendar month where the merchant is: the first instant of the next
        month in the program's timezone.
        """
        if self.policy == "days" and self.days is not None:
            return earned_at + timedelta(days=self.days)
        if self.policy == "end_of_month" and self.months is not None:
            local = earned_at.astimezone(tz)
            month_index = local.year * 12 + (local.month - 1) + self.months + 1
            start_of_next = datetime(month_index // 12, month_index % 12 + 1, 1, tzinfo=tz)
            return start_of_next.astimezone(UTC)
        return None


def localized(language: str, default: str, zh_hans: str | None, zh_hant: str | None) -> str:
    """A merchant-written text in the member's language when the program file gives one."""
    return {"zh-Hans": zh_hans, "zh-Hant": zh_hant}.get(language) or default


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class PromotionRule(_Section):
    """Behavioural loyalty: extra points for buying when, what or how much the merchant wants.

    A purchase matches when every condition given holds: local date range, weekdays, local time window,
    categories, minimum amount, minimum items, and the per-member limit for the period.
    """

    # The name is also the promotion's key: a purchase records it, per-member limits count by it and members read
    # it in their language through ``name_in`` (so a member sees today's translation of an old purchase too).
    name: str = Field(min_length=1, max_length=48)
    name_zh_hans: str | None = Field(default=None, min_length=1, max_length=48)
    name_zh_hant: str | None = Field(default=None, min_length=1, max_length=48)
    multiplier: Decimal | None = Field(default=None, gt=1, le=100)
    bonus: int | None = Field(default=None, gt=0, le=1_000_000)
    starts: date | None = None
    ends: date | None = None
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    start_time: time | None = None
    end_time: time | None = None
    categories: list[str] | None = None
    min_amount: Decimal | None = Field(default=None, gt=0)
    min_items: int | None = Field(default=None, gt=1)
    limit_per_member: int | None = Field(default=None, gt=0)
    limit_period: Literal["day", "week", "month"] = "day"
    stores: list[str] | None = None  # [[stores]] keys: only purchases recorded there ("double points at the airport")

    @model_validator(mode="after")
    def _consistent(self) -> PromotionRule:
        if (self.multiplier is None) == (self.bonus is None):
            raise ValueError('give exactly one of multiplier (e.g. "2") or bonus (points)')
        if (self.start_time is None) != (self.end_time is None):
            raise ValueError("give both start_time and end_time, or neither")
        if self.start_time is not None and self.end_time is not None and self.start_time >= self.end_time:
            raise ValueError("start_time must be before end_time")
        if self.starts is not None and self.ends is not None and self.starts > self.ends:
            raise ValueError("starts must not be after ends")
        return self

    def name_in(self, language: str) -> str:
        return localized(language, self.name, self.name_zh_hans, self.name_zh_hant)


class RewardRule(_Section):
    """A catalog entry in the program file; ``key`` ties it to its database row across restarts."""

    key: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    title: str = Field(min_length=1, max_length=64)
    title_zh_hans: str | None = Field(default=None, min_length=1, max_length=64)
    title_zh_hant: str | None = Field(default=None, min_length=1, max_length=64)
    cost: int = Field(gt=0, le=MAX_REWARD_COST)
    stock: int | None = Field(default=None, ge=0)
    per_member_limit: int | None = Field(default=None, gt=0)
    validity_days: int = Field(default=DEFAULT_VALIDITY_DAYS, gt=0, le=MAX_VALIDITY_DAYS)
    min_tier: str | None = None  # a [[tiers.levels]] name: only members at this tier or above may redeem
    stores: list[str] | None = None  # [[stores]] keys: its coupons are accepted only at these stores


class StoreRule(_Section):
    """One shop of a chain: purchases, refunds and coupons record where they happened."""

    key: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    name: str = Field(min_length=1, max_length=48)
    name_zh_hans: str | None = Field(default=None, min_length=1, max_length=48)
    name_zh_hant: str | None = Field(default=None, min_length=1, max_length=48)
    # Its own time zone when it differs from the program's: time-of-day promotions read its clock.
    timezone: str | None = None
    # Names of API tokens (LOYALTY_API_TOKENS name:token) whose purchases are this store's (its tills).
    tokens: list[Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,32}$")]] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return _zone(value) if value is not None else None

    def name_in(self, language: str) -> str:
        return localized(language, self.name, self.name_zh_hans, self.name_zh_hant)


class PunchCardRule(_Section):
    """Transactional loyalty: "coffee: 9 stamps, the 10th is free". A full card issues its reward's coupon."""

    key: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    name: str = Field(min_length=1, max_length=48)
    name_zh_hans: str | None = Field(default=None, min_length=1, max_length=48)
    name_zh_hant: str | None = Field(default=None, min_length=1, max_length=48)
    category: str = Field(min_length=1, max_length=32)
    stamps: int = Field(gt=0, le=100)

    def name_in(self, language: str) -> str:
        return localized(language, self.name, self.name_zh_hans, self.name_zh_hant)

    per: Literal["purchase", "item"] = "purchase"
    reward: str


class TierLevel(_Section):
    name: str = Field(min_length=1, max_length=32)
    name_zh_hans: str | None = Field(default=None, min_length=1, max_length=32)
    name_zh_hant: str | None = Field(default=None, min_length=1, max_length=32)
    enter: Decimal = Field(gt=0)  # qualifying spend (or points) over the window to reach this tier
    keep: Decimal | None = Field(default=None, gt=0)  # to stay at the review; default: the same as enter
    multiplier: Decimal = Field(default=Decimal(1), ge=1, le=10)
    perks: str = Field(default="", max_length=200)
    perks_zh_hans: str | None = Field(default=None, min_length=1, max_length=200)
    perks_zh_hant: str | None = Field(default=None, min_length=1, max_length=200)

    @property
    def keep_threshold(self) -> Decimal:
        return self.keep if self.keep is not None else self.enter

    def name_in(self, language: str) -> str:
        return localized(language, self.name, self.name_zh_hans, self.name_zh_hant)

    def perks_in(self, language: str) -> str:
        return localized(language, self.perks, self.perks_zh_hans, self.perks_zh_hant)


class TierRules(_Section):
    """Tiers on qualifying spend (or points earned, never the spendable balance) over a rolling window."""

    basis: Literal["spend", "points"] = "spend"
    window_months: int = Field(default=12, gt=0, le=60)
    # Whether a purchase counts toward tiers while its points are pending ([earn] pending_days), or only once they
    # are available: a purchase returned inside the window then never lifts a member a tier.
    count_pending: bool = False
    warning_days: int = Field(default=14, ge=0, le=365)
    levels: list[TierLevel] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ascending(self) -> TierRules:
        enters = [level.enter for level in self.levels]
        if enters != sorted(enters) or len(set(enters)) != len(enters):
            raise ValueError("levels must be listed from lowest to highest, with rising enter thresholds")
        if any(level.keep_threshold > level.enter for level in self.levels):
            raise ValueError("keep must not be above enter")
        if len({level.name for level in self.levels}) != len(self.levels):
            raise ValueError("level names must be unique")
        return self

    def level(self, name: str | None) -> TierLevel | None:
        return next((level for level in self.levels if level.name == name), None)


class ReferralRules(_Section):
    """Points for word of mouth, paid only for real customers: the referrer's bonus waits for the friend's first
    qualifying purchase, a monthly cap bounds what one member can collect, and a burst of joins through one link
    is held for staff review."""

    friend_bonus: int = Field(default=0, ge=0, le=1_000_000)
    friend_bonus_on: Literal["join", "first_purchase"] = "join"
    referrer_bonus: int = Field(default=0, ge=0, le=1_000_000)
    qualifying_amount: Decimal = Field(default=Decimal(0), ge=0)
    monthly_cap: int = Field(default=10, ge=0, le=10_000)
    burst_limit: int = Field(default=5, gt=0, le=10_000)  # joins through one link per hour before review

    @property
    def enabled(self) -> bool:
        return bool(self.friend_bonus or self.referrer_bonus)


class ShareKind(_Section):
    """Points for one kind of member content (a link to a public post, a review, a photo), paid on approval."""

    points: int = Field(default=0, ge=0, le=1_000_000)
    per_day: int = Field(default=1, gt=0, le=1000)
    per_month: int = Field(default=4, gt=0, le=10_000)


class SharingRules(_Section):
    link: ShareKind = ShareKind()
    review: ShareKind = ShareKind()
    photo: ShareKind = ShareKind()

    def kind(self, name: str) -> ShareKind:
        rule: ShareKind = getattr(self, name)
        return rule

    @property
    def kinds(self) -> list[str]:
        """The kinds members can submit: those that pay something."""
        return [name for name in ("link", "review", "photo") if self.kind(name).points > 0]


class Category(_Section):
    key: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    name: str = Field(min_length=1, max_length=32)
    name_zh_hans: str | None = Field(default=None, min_length=1, max_length=32)
    name_zh_hant: str | None = Field(default=None, min_length=1, max_length=32)

    def name_in(self, language: str) -> str:
        return localized(language, self.name, self.name_zh_hans, self.name_zh_hant)


class ProfileRules(_Section):
    """The one-time bonus for a complete profile: birthday, at least one favourite category, phone number."""

    bonus: int = Field(default=0, ge=0, le=1_000_000)
    categories: list[Category] = Field(default_factory=list, max_length=24)

    @field_validator("categories")
    @classmethod
    def _unique_categories(cls, categories: list[Category]) -> list[Category]:
        if len({category.key for category in categories}) != len(categories):
            raise ValueError("category keys must be unique")
        return categories

    def category(self, key: str) -> Category | None:
        return next((category for category in self.categories if category.key == key), None)


class Offer(_Section):
    """What a scheduled message gives: bonus points and/or a coupon for a reward from [[rewards]]."""

    bonus: int = Field(default=0, ge=0, le=1_000_000)
    reward: str | None = None
    coupon_days: int = Field(default=14, gt=0, le=365)


# A randomized holdout: this share of the eligible members gets nothing, to measure the campaign against.
HOLDOUT_MAX = 0.5


class BirthdayRules(Offer):
    enabled: bool = True
    hour: int = Field(default=9, ge=0, le=23)  # local hour from which greetings go out
    holdout: Decimal = Field(default=Decimal(0), ge=0, le=Decimal(str(HOLDOUT_MAX)))


class WinbackRules(_Section):
    """Nudges for members who drift away: after ``days`` without a purchase (or ``factor`` × their own average
    interval between purchases, never less than ``days``), up to ``max_nudges`` per lapse, ``cooldown_days`` apart."""

    enabled: bool = True
    days: int = Field(default=30, gt=0, le=3650)
    factor: Decimal | None = Field(default=None, gt=1, le=20)
    max_nudges: int = Field(default=2, gt=0, le=10)
    cooldown_days: int = Field(default=14, gt=0, le=365)
    bonus: int = Field(default=0, ge=0, le=1_000_000)  # extra points for a purchase within bonus_days of a nudge
    bonus_days: int = Field(default=7, gt=0, le=365)
    reward: str | None = None  # or a coupon for this reward, valid coupon_days
    coupon_days: int = Field(default=14, gt=0, le=365)
    # Drawn once per lapse, before its first nudge.
    holdout: Decimal = Field(default=Decimal(0), ge=0, le=Decimal(str(HOLDOUT_MAX)))


class AnalyticsRules(_Section):
    # What a point costs the merchant, in the program's currency: the outstanding points' liability in money.
    point_value: Decimal = Field(default=Decimal("0.01"), ge=0, le=1000)
    # Campaign effect: a recipient "bought" when a purchase came within this many days of the message.
    effect_days: int = Field(default=14, gt=0, le=90)
    # A member held out last time a campaign of the same kind drew its holdout is not held out again (they get the
    # message this time). Off: every draw is independent, which is what the statistics assume.
    holdout_rotates: bool = False


class DigestRules(_Section):
    enabled: bool = True
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    hour: int = Field(default=9, ge=0, le=23)


class ApiRules(_Section):
    # A till that was offline sends its purchases later; one dated further back than this is a mistake.
    backdate_days: int = Field(default=90, ge=0, le=3650)


class SupportRules(_Section):
    response_target_minutes: int = Field(default=60, gt=0, le=10_080)  # threads waiting longer are flagged


class NpsRules(_Section):
    """Net Promoter Score surveys some hours after a purchase, at most once per member per ``min_days_between``."""

    enabled: bool = True
    delay_hours: int = Field(default=24, ge=0, le=24 * 30)
    min_days_between: int = Field(default=90, ge=1, le=3650)
    # Purchases older than delay + this are not surveyed late (after downtime, say): memories fade.
    window_hours: int = Field(default=72, gt=0, le=24 * 30)


SUBSCRIPTION_DAYS = 30  # Telegram Stars subscriptions renew every 2592000 seconds


class VipRules(_Section):
    """Paid VIP membership sold for Telegram Stars: a period of better earning, a monthly gift and a reminder
    before it ends. Without a [vip] section, or with ``enabled = false``, VIP is not offered."""

    enabled: bool = True
    # "one_off": each payment buys one period; "subscription": Telegram renews it every 30 days until cancelled.
    renew: Literal["subscription", "one_off"] = "one_off"
    price_stars: int = Field(gt=0, le=10_000)  # Telegram caps one Stars invoice (and a subscription) at 10,000
    period_days: int = Field(default=30, gt=0, le=366)
    multiplier: Decimal = Field(default=Decimal(1), ge=1, le=10)
    # With a tier's multiplier: "multiply" (Gold 1.5 × VIP 1.5 = 2.25) or "max" (the better of the two).
    combine: Literal["multiply", "max"] = "multiply"
    monthly_bonus: int = Field(default=0, ge=0, le=1_000_000)
    monthly_reward: str | None = None  # a [[rewards]] key: a coupon for it every month
    coupon_days: int = Field(default=14, gt=0, le=365)
    reminder_days: int = Field(default=3, ge=0, le=30)  # remind this many days before VIP ends; 0: never
    # Shown in the invoice: Telegram allows a title of 32 characters and a description of 255.
    title: str = Field(default="VIP membership", min_length=1, max_length=32)
    title_zh_hans: str | None = Field(default=None, min_length=1, max_length=32)
    title_zh_hant: str | None = Field(default=None, min_length=1, max_length=32)
    benefits: str = Field(min_length=1, max_length=255)
    benefits_zh_hans: str | None = Field(default=None, min_length=1, max_length=255)
    benefits_zh_hant: str | None = Field(default=None, min_length=1, max_length=255)
    terms: str = Field(min_length=1, max_length=2000)
    terms_zh_hans: str | None = Field(default=None, min_length=1, max_length=2000)
    terms_zh_hant: str | None = Field(default=None, min_length=1, max_length=2000)

    @model_validator(mode="after")
    def _reminder_inside_period(self) -> VipRules:
        if self.reminder_days >= self.period_days:
            raise ValueError("reminder_days must be shorter than period_days")
        # Telegram renews Stars subscriptions every 30 days exactly (createInvoiceLink's subscription_period).
        if self.renew == "subscription" and self.period_days != SUBSCRIPTION_DAYS:
            raise ValueError(f'period_days must be {SUBSCRIPTION_DAYS} with renew = "subscription"')
        return self

    def title_in(self, language: str) -> str:
        return localized(language, self.title, self.title_zh_hans, self.title_zh_hant)

    def benefits_in(self, language: str) -> str:
        return localized(language, self.benefits, self.benefits_zh_hans, self.benefits_zh_hant)

    def terms_in(self, language: str) -> str:
        return localized(language, self.terms, self.terms_zh_hans, self.terms_zh_hant)


class CheckinMilestone(_Section):
    """A streak's milestone: on the ``day``-th consecutive local day checked in, ``points`` and/or a coupon."""

    day: int = Field(gt=1, le=366)
    points: int = Field(default=0, ge=0, le=1_000_000)
    reward: str | None = None  # a [[rewards]] key: a coupon for it
    coupon_days: int = Field(default=14, gt=0, le=365)

    @model_validator(mode="after")
    def _pays(self) -> CheckinMilestone:
        if not self.points and self.reward is None:
            raise ValueError(f"streak day {self.day}: give points or a reward")
        return self


class CheckinRules(_Section):
    """Daily check-in (签到): once per local day, with streak milestones. Absent: no check-in."""

    enabled: bool = False
    points: int = Field(default=5, ge=0, le=1_000_000)  # for each check-in
    # The hour (program time) a new check-in day begins: 0 is midnight; 4 lets a night owl's 1 a.m. count as
    # the evening before.
    day_starts: int = Field(default=0, ge=0, le=23)
    streak: list[CheckinMilestone] = Field(default_factory=list, max_length=24)
    makeup_cost: int = Field(default=0, ge=0, le=1_000_000)  # points for checking in for a missed yesterday; 0: off
    makeups_per_month: int = Field(default=2, ge=0, le=31)
    monthly_cap: int = Field(default=0, ge=0, le=10_000_000)  # most points check-ins pay in a local month; 0: none
    min_member_hours: int = Field(default=24, ge=0, le=24 * 365)  # members newer than this cannot check in yet
    reminder_hour: int = Field(default=20, ge=0, le=23)  # the opt-in evening reminder, program time

    @field_validator("streak")
    @classmethod
    def _unique_days(cls, streak: list[CheckinMilestone]) -> list[CheckinMilestone]:
        days = [milestone.day for milestone in streak]
        if len(days) != len(set(days)):
            raise ValueError("streak days must be unique")
        return sorted(streak, key=lambda milestone: milestone.day)


class MissionRule(_Section):
    """A goal that pays once when reached, per period (a local week or month) or between two dates."""

    key: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    name: str = Field(min_length=1, max_length=48)
    name_zh_hans: str | None = Field(default=None, min_length=1, max_length=48)
    name_zh_hant: str | None = Field(default=None, min_length=1, max_length=48)
    goal: Literal["purchases", "spend", "categories", "referrals", "checkin_streak"]
    target: Decimal = Field(gt=0, le=10_000_000)  # a count, an amount of money (spend) or a number of days
    period: Literal["week", "month"] | None = None
    starts: date | None = None
    ends: date | None = None
    points: int = Field(default=0, ge=0, le=1_000_000)
    reward: str | None = None  # a [[rewards]] key: a coupon for it
    coupon_days: int = Field(default=14, gt=0, le=365)
    tiers: list[str] | None = None  # [[tiers.levels]] names: only members at these tiers
    stores: list[str] | None = None  # [[stores]] keys: only purchases there count

    @model_validator(mode="after")
    def _consistent(self) -> MissionRule:
        dated = self.starts is not None or self.ends is not None
        if (self.period is None) == (not dated) or (dated and (self.starts is None or self.ends is None)):
            raise ValueError(f"mission {self.key!r}: give either period or both starts and ends")
        if self.starts is not None and self.ends is not None and self.ends < self.starts:
            raise ValueError(f"mission {self.key!r}: ends is before starts")
        if not self.points and self.reward is None:
            raise ValueError(f"mission {self.key!r}: give points or a reward")
        if self.goal != "spend" and self.target != self.target.to_integral_value():
            raise ValueError(f"mission {self.key!r}: target must be a whole number for goal {self.goal!r}")
        return self

    def name_in(self, language: str) -> str:
        return localized(language, self.name, self.name_zh_hans, self.name_zh_hant)


class Program(_Section):
    name: str = Field(min_length=1, max_length=64)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    timezone: str = "UTC"
    earn: EarnRules = EarnRules()
    welcome: WelcomeRules = WelcomeRules()
    expiry: ExpiryRules = ExpiryRules()
    rewards: list[RewardRule] = Field(default_factory=list)
    promotions: list[PromotionRule] = Field(default_factory=list)
    punch_cards: list[PunchCardRule] = Field(default_factory=list)
    stores: list[StoreRule] = Field(default_factory=list)
    tiers: TierRules = TierRules()
    referrals: ReferralRules = ReferralRules()
    sharing: SharingRules = SharingRules()
    profile: ProfileRules = ProfileRules()
    support: SupportRules = SupportRules()
    nps: NpsRules = NpsRules()
    birthday: BirthdayRules = BirthdayRules()
    winback: WinbackRules = WinbackRules()
    digest: DigestRules = DigestRules()
    analytics: AnalyticsRules = AnalyticsRules()
    api: ApiRules = ApiRules()
    vip: VipRules | None = None  # absent: VIP is not offered
    checkin: CheckinRules = CheckinRules()
    missions: list[MissionRule] = Field(default_factory=list, max_length=50)
    # The language of messages to staff (reviews in the support chat): most merchants' staff read Chinese.
    staff_language: Literal["en", "zh-Hans", "zh-Hant"] = "en"
    # The database revision this program is (``loyalty.revisions``); None: read from a file, not stored.
    _revision: int | None = PrivateAttr(default=None)

    @property
    def revision(self) -> int | None:
        return self._revision

    @model_validator(mode="after")
    def _cards_name_rewards(self) -> Program:
        keys = {reward.key for reward in self.rewards}
        for card in self.punch_cards:
            if card.reward not in keys:
                raise ValueError(f"punch card {card.key!r}: reward {card.reward!r} is not among [[rewards]] keys")
        tiers = {level.name for level in self.tiers.levels}
        for reward in self.rewards:
            if reward.min_tier is not None and reward.min_tier not in tiers:
                raise ValueError(f"reward {reward.key!r}: min_tier {reward.min_tier!r} is not a tier level name")
        vip_reward = self.vip.monthly_reward if self.vip else None
        for where, offer in (
            ("birthday.reward", self.birthday.reward),
            ("winback.reward", self.winback.reward),
            ("vip.monthly_reward", vip_reward),
            *((f"checkin.streak day {m.day} reward", m.reward) for m in self.checkin.streak),
            *((f"mission {m.key!r} reward", m.reward) for m in self.missions),
        ):
            if offer is not None and offer not in keys:
                raise ValueError(f"{where} {offer!r} is not among [[rewards]] keys")
        if len({card.key for card in self.punch_cards}) != len(self.punch_cards):
            raise ValueError("punch card keys must be unique")
        stores = [store.key for store in self.stores]
        if len(stores) != len(set(stores)):
            raise ValueError("store keys must be unique")
        tokens = [token for store in self.stores for token in store.tokens]
        if len(tokens) != len(set(tokens)):
            raise ValueError("an API token belongs to one store at most")
        missions = [mission.key for mission in self.missions]
        if len(missions) != len(set(missions)):
            raise ValueError("mission keys must be unique")
        for mission in self.missions:
            if unknown := [name for name in mission.tiers or [] if name not in tiers]:
                raise ValueError(f"mission {mission.key!r}: tiers {unknown} are not tier level names")
        for where, named in (
            *((f"promotion {p.name!r}", p.stores) for p in self.promotions),
            *((f"reward {r.key!r}", r.stores) for r in self.rewards),
            *((f"mission {m.key!r}", m.stores) for m in self.missions),
        ):
            if unknown := [key for key in named or [] if key not in stores]:
                raise ValueError(f"{where}: stores {unknown} are not among [[stores]] keys")
        return self

    @field_validator("promotions")
    @classmethod
    def _unique_promotions(cls, promotions: list[PromotionRule]) -> list[PromotionRule]:
        # The name is the key a purchase records; two alike would share their limits and their translations.
        names = [promotion.name for promotion in promotions]
        if len(names) != len(set(names)):
            raise ValueError("promotion names must be unique")
        return promotions

    @field_validator("rewards")
    @classmethod
    def _unique_keys(cls, rewards: list[RewardRule]) -> list[RewardRule]:
        keys = [reward.key for reward in rewards]
        if len(keys) != len(set(keys)):
            raise ValueError("reward keys must be unique")
        return rewards

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _zone(value)

    def store(self, key: str | None) -> StoreRule | None:
        return next((store for store in self.stores if store.key == key), None) if key else None

    def accepted_at(self, reward_key: str | None, store: str | None) -> bool:
        """Whether a reward's coupon may be accepted at ``store``: rewards limited to stores are only there."""
        rule = next((r for r in self.rewards if r.key == reward_key), None) if reward_key else None
        return rule is None or rule.stores is None or store in rule.stores

    def store_tz(self, key: str | None) -> ZoneInfo:
        """The clock a store's purchases are read by: its own zone, else the program's."""
        store = self.store(key)
        return ZoneInfo(store.timezone) if store is not None and store.timezone else self.tz

    @property
    def vip_offer(self) -> VipRules | None:
        """The VIP offer members can buy now, or None when it is not offered."""
        return self.vip if self.vip is not None and self.vip.enabled else None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def expires_at(self, earned_at: datetime) -> datetime | None:
        return self.expiry.expires_at(earned_at, self.tz)

    @property
    def minor_digits(self) -> int:
        """Decimal places of the currency's minor unit (2 for CNY, 0 for JPY)."""
        return int(get_currency_precision(self.currency))

    def promotion_name(self, name: str, language: str) -> str:
        """A purchase's promotion (recorded by its name, the promotion's key) as a member reads it: the program's
        translation when the promotion is in the file, else the name as recorded (a campaign started in chat)."""
        rule = next((promotion for promotion in self.promotions if promotion.name == name), None)
        return rule.name_in(language) if rule is not None else name

    def categories(self) -> set[str]:
        """Purchase categories the program names: promotions', punch cards', favourites' and ``[earn]``'s."""
        named = set(self.earn.categories)
        for promotion in self.promotions:
            named.update(c.lower() for c in promotion.categories or ())
        named.update(card.category.lower() for card in self.punch_cards)
        named.update(category.key for category in self.profile.categories)
        return named


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(file)"
        reason = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{where}: {reason}")
    return "; ".join(lines)


def parse_program(text: str, source: str = "program file") -> Program:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"{source}: not valid TOML: {exc}") from exc
    return program_from_data(data, source)


def program_from_data(data: dict[str, Any], source: str = "program", revision: int | None = None) -> Program:
    """The program from its data (a parsed file, or a revision's JSON), checked by the same models and reported
    with the same messages as the file."""
    try:
        program = Program.model_validate(data)
    except ValidationError as exc:
        raise ProgramError(f"{source}: {_describe(exc)}") from exc
    program._revision = revision
    return program


def program_data(program: Program) -> dict[str, Any]:
    """What the program's file says, as JSON-ready data: only the keys it gives (defaults stay defaults, so a
    later version's better default reaches programs that never chose), decimals and times as strings, as the
    file writes them."""
    data: dict[str, Any] = program.model_dump(mode="json", exclude_unset=True)
    return data


def load_program(path: Path | None = None) -> Program:
    path = path or EXAMPLE_PROGRAM
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProgramError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_program(text, str(path))
