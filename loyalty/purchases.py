"""Purchases: parsing an amount as a cashier types it, and recording a purchase exactly once."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache

from babel.numbers import get_currency_symbol
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty import missions, pending, referrals, vip, winback
from loyalty.audit import refuse_own_account
from loyalty.earning import Basket, earning_for
from loyalty.ledger import Kind, credit
from loyalty.program import Program, TierLevel
from loyalty.punchcards import CardProgress, stamp
from loyalty.tiers import multiplier as tier_multiplier
from loyalty.tiers import promote_if_earned
from storage.database import begin_write
from storage.models import Campaign, Member, Purchase

CATEGORY_RE = re.compile(r"^[\w-]{1,32}$")
RECEIPT_RE = re.compile(r"^[\w./:#-]{1,64}$")
MAX_ITEMS = 999
# A till's clock may run a little ahead; a purchase further in the future is a mistake.
CLOCK_SKEW = timedelta(minutes=5)
# Where a purchase came from decides where its receipt number is unique: the chat is one scope, each named API
# token another; unnamed tokens share the scope "api".
CHAT_SCOPE = "chat"
API_SCOPE = "api"


class AmountProblem(StrEnum):
    NOT_A_NUMBER = "not_a_number"
    NOT_POSITIVE = "not_positive"
    TOO_PRECISE = "too_precise"
    TOO_LARGE = "too_large"
    DECIMAL_COMMA = "decimal_comma"  # "12,50": twelve and a half, or 1,250 with a digit missing?


class AmountError(ValueError):
    def __init__(self, problem: AmountProblem, limit: Decimal | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.limit = limit


def parse_amount(text: str, program: Program) -> Decimal:
    """A positive amount in the program's currency with at most its minor-unit decimals."""
    # Only plain decimals: "1e3", "Infinity" and "1,000" are typos at a till, not amounts.
    # ASCII digits only: Python's \d and Decimal also take "٥" and "５", which no till prints.
    if not re.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?", text.strip()):
        raise AmountError(AmountProblem.NOT_A_NUMBER)
    try:
        amount = Decimal(text.strip())
    except InvalidOperation as exc:  # pragma: no cover - the pattern above admits only valid decimals
        raise AmountError(AmountProblem.NOT_A_NUMBER) from exc
    if amount <= 0:
        raise AmountError(AmountProblem.NOT_POSITIVE)
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > program.minor_digits:
        raise AmountError(AmountProblem.TOO_PRECISE, Decimal(1).scaleb(-program.minor_digits))
    if amount > program.earn.maximum_amount:
        raise AmountError(AmountProblem.TOO_LARGE, program.earn.maximum_amount)
    return amount


# How people write the program's currency next to an amount at a till, besides its code and Babel's symbols.
LOCAL_UNITS: dict[str, tuple[str, ...]] = {
    "CNY": ("元", "块", "塊", "RMB", "rmb", "¥", "￥"),
    "JPY": ("円", "¥", "￥"),
    "TWD": ("元", "NT$"),
    "HKD": ("元", "HK$"),
    "USD": ("$", "US$"),
    "EUR": ("€",),
    "GBP": ("£",),
}
_THOUSANDS = re.compile(r"^[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?$")
_DECIMAL_COMMA = re.compile(r"^[0-9]+,[0-9]{1,2}$")


@cache
def currency_marks(currency: str) -> tuple[str, ...]:
    """The ways an amount in this currency may be marked as typed (¥12, 12元, CNY 12), longest first."""
    marks = {currency, currency.lower(), *LOCAL_UNITS.get(currency, ())}
    for locale in ("en", "zh_Hans_CN", "zh_Hant_TW", "zh_Hant_HK"):
        marks.add(get_currency_symbol(currency, locale))
    return tuple(sorted((m for m in marks if m and not m[0].isdigit()), key=len, reverse=True))


def typed_amount(text: str, program: Program) -> str:
    """An amount as a person types it in chat, as the plain decimal ``parse_amount`` takes: the program's
    currency mark before or after it (¥12, 12元, CNY 12) and thousands separators (1,200) go. "12,50" is
    refused (DECIMAL_COMMA) rather than guessed. The purchases API takes plain decimals only."""
    value = text.strip()
    for mark in currency_marks(program.currency):
        if value.startswith(mark):
            value = value[len(mark) :].strip()
            break
        if value.endswith(mark):
            value = value[: -len(mark)].strip()
            break
    if _THOUSANDS.match(value):
        return value.replace(",", "")
    if _DECIMAL_COMMA.match(value):
        raise AmountError(AmountProblem.DECIMAL_COMMA)
    return value


def is_currency_mark(word: str, program: Program) -> bool:
    return word in currency_marks(program.currency)


class InputProblem(StrEnum):
    AMOUNT = "amount"  # see the AmountError
    ITEMS = "items"
    CATEGORY = "category"
    UNKNOWN_CATEGORY = "unknown_category"  # well formed, but not one the program names
    RECEIPT = "receipt"
    IN_FUTURE = "occurred_in_future"
    TOO_OLD = "occurred_too_long_ago"  # before the program's [api] backdate_days


class PurchaseInputError(ValueError):
    def __init__(self, problem: InputProblem, amount: AmountError | None = None, suggestion: str | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.amount = amount
        self.suggestion = suggestion  # for an unknown category: the closest one the program names


@dataclass(frozen=True)
class PurchaseInput:
    amount: Decimal
    category: str | None  # lower case
    items: int
    receipt: str | None
    occurred_at: datetime | None  # UTC


def check_purchase(
    program: Program,
    *,
    amount: str,
    now: datetime,
    category: str | None = None,
    items: str | int = 1,
    receipt: str | None = None,
    occurred_at: datetime | None = None,
    typed: bool = False,
) -> PurchaseInput:
    """A purchase as a cashier types it or a till sends it, checked by the same rules: /purchase and the
    purchases API both come through here. Raises PurchaseInputError naming the first problem.

    ``typed`` (the chat): the amount as people write it (``typed_amount``), and the category one the program
    names, if it names any: a mistyped one ("cofee") would lose its stamp and promotion without a word. A till
    (the API) sends its own categories and plain decimals."""
    try:
        value = parse_amount(typed_amount(amount, program) if typed else amount, program)
    except AmountError as error:
        raise PurchaseInputError(InputProblem.AMOUNT, error) from error
    if isinstance(items, str):
        if not (items.isascii() and items.isdecimal()) or len(items) > 4:
            raise PurchaseInputError(InputProblem.ITEMS)
        items = int(items)
    if not 1 <= items <= MAX_ITEMS:
        raise PurchaseInputError(InputProblem.ITEMS)
    if category is not None and not CATEGORY_RE.match(category):
        raise PurchaseInputError(InputProblem.CATEGORY)
    if typed and category is not None and (known := program.categories()) and category.lower() not in known:
        close = difflib.get_close_matches(category.lower(), sorted(known), n=1, cutoff=0.6)
        raise PurchaseInputError(InputProblem.UNKNOWN_CATEGORY, suggestion=close[0] if close else None)
    if receipt is not None and not RECEIPT_RE.match(receipt):
        raise PurchaseInputError(InputProblem.RECEIPT)
    if occurred_at is not None:
        if occurred_at.tzinfo is None:
            raise ValueError("occurred_at must carry its UTC offset")
        if occurred_at > now + CLOCK_SKEW:
            raise PurchaseInputError(InputProblem.IN_FUTURE)
        if occurred_at < now - timedelta(days=program.api.backdate_days):
            raise PurchaseInputError(InputProblem.TOO_OLD)
        occurred_at = occurred_at.astimezone(UTC)  # time is stored in UTC
    return PurchaseInput(value, category.lower() if category else None, items, receipt, occurred_at)


def to_minor(amount: Decimal, program: Program) -> int:
    return int(amount.scaleb(program.minor_digits))


def from_minor(amount_minor: int, program: Program) -> Decimal:
    return Decimal(amount_minor).scaleb(-program.minor_digits)


@dataclass(frozen=True)
class PurchaseResult:
    purchase: Purchase
    created: bool
    points: int
    balance: int
    cards: list[CardProgress] = field(default_factory=list)
    promoted: TierLevel | None = None
    referral: referrals.Payout | None = None  # what a referred friend's first qualifying purchase paid
    winback_bonus: int = 0  # points for coming back within a win-back offer's window
    campaign: Campaign | None = None  # the campaign the purchase earned with: members read its name in their language
    missions: list[missions.Completion] = field(default_factory=list)  # the buyer's missions this purchase completed


async def find_purchase(session: AsyncSession, scope: str, source: str, external_id: str) -> Purchase | None:
    result = await session.execute(
        select(Purchase).where(
            col(Purchase.scope) == scope, col(Purchase.source) == source, col(Purchase.external_id) == external_id
        )
    )
    return result.scalar_one_or_none()


async def record_purchase(
    session: AsyncSession,
    program: Program,
    *,
    member_id: int,
    amount: Decimal,
    source: str,
    external_id: str,
    now: datetime,
    category: str | None = None,
    items: int = 1,
    recorded_by: int | None = None,
    occurred_at: datetime | None = None,
    scope: str = CHAT_SCOPE,
    store: str | None = None,
) -> PurchaseResult:
    """Record a purchase and award its points, once per ``(scope, source, external_id)``.

    ``occurred_at`` (a till's own timestamp, sent later) sets which time-of-day promotions apply; the points are
    still credited, and expire, from ``now``.
    ``store`` (a ``[[stores]]`` key, see ``loyalty.stores.where``) is recorded; promotions limited to stores match
    by it, and time-of-day promotions read that store's clock.
    """
    await begin_write(session)
    existing = await find_purchase(session, scope, source, external_id)
    if existing is not None:
        return await _replayed(session, existing)
    member = await session.get(Member, member_id)
    if member is None:
        raise LookupError(member_id)
    await refuse_own_account(
        session, actor_id=recorded_by, member=member, action="purchase", detail=f"{amount} {external_id}", now=now
    )
    occurred = occurred_at or now
    # VIP as of recording: a till may send a purchase late, but VIP counts for what is earned now.
    multiplier = vip.earn_multiplier(program, tier_multiplier(program, member.tier), member.vip_until, now)
    basket = Basket(amount, category, items, occurred, multiplier, store)
    earning = await earning_for(session, program, member_id, basket)
    points = earning.total
    purchase = Purchase(
        member_id=member_id,
        scope=scope,
        source=source,
        external_id=external_id,
        amount_minor=to_minor(amount, program),
        currency=program.currency,
        category=category,
        items=items,
        base_points=earning.base,
        points=points,
        promotion=earning.promotion,
        promotion_detail=earning.detail,
        campaign_id=earning.campaign.id if earning.campaign is not None else None,
        program_revision=program.revision,  # the one revision every rule above was read from
        recorded_by=recorded_by,
        store=store,
        occurred_at=occurred,
        created_at=now,
    )
    session.add(purchase)
    try:
        await session.flush()
        assert purchase.id is not None
        if points and (until := pending.available_at(program, now)) is not None:
            await pending.hold(session, purchase, points, until)  # the return window: spendable once it ends
            balance = await _balance(session, member_id)
        elif points:
            _, balance = await credit(
                session,
                member_id,
                points,
                kind=Kind.PURCHASE,
                now=now,
                expires_at=program.expires_at(now),
                purchase_id=purchase.id,
                key=f"purchase:{purchase.id}",
            )
        else:
            balance = await _balance(session, member_id)
        cards = await stamp(session, program, purchase, now)
        promoted = await promote_if_earned(session, program, member, now)
        payout = await referrals.on_purchase(session, program, purchase, now)
        welcome_back = await winback.on_purchase(session, program, member, purchase, now)
        completed = await missions.evaluate(session, program, member_id, now)
        if payout is not None:  # the referrer's "refer a friend who buys"
            await missions.evaluate(session, program, payout.referrer.id or 0, now, goals=("referrals",))
        await session.commit()
    except IntegrityError:
        # A concurrent delivery of the same purchase committed first: report that one.
        await session.rollback()
        winner = await find_purchase(session, scope, source, external_id)
        if winner is None:
            raise
        return await _replayed(session, winner)
    if payout is not None and payout.friend_points:
        balance += payout.friend_points
    return PurchaseResult(
        purchase,
        created=True,
        points=points,
        balance=balance + welcome_back + sum(done.points for done in completed),
        cards=cards,
        promoted=promoted,
        referral=payout,
        winback_bonus=welcome_back,
        campaign=earning.campaign,
        missions=completed,
    )


async def _balance(session: AsyncSession, member_id: int) -> int:
    return int((await session.execute(select(col(Member.points)).where(col(Member.id) == member_id))).scalar_one())


async def _replayed(session: AsyncSession, purchase: Purchase) -> PurchaseResult:
    campaign = await session.get(Campaign, purchase.campaign_id) if purchase.campaign_id is not None else None
    return PurchaseResult(
        purchase,
        created=False,
        points=purchase.points,
        balance=await _balance(session, purchase.member_id),
        campaign=campaign,
    )


async def recorded_by(
    session: AsyncSession, actor_id: int, since: datetime, limit: int = 50
) -> list[tuple[Purchase, Member]]:
    """The purchases one cashier recorded since ``since`` (their shift, their till), newest first, with whose."""
    rows = await session.execute(
        select(Purchase, Member)
        .join(Member, col(Member.id) == col(Purchase.member_id))
        .where(col(Purchase.recorded_by) == actor_id, col(Purchase.created_at) >= since)
        .order_by(col(Purchase.created_at).desc(), col(Purchase.id).desc())
        .limit(limit)
    )
    return [(purchase, member) for purchase, member in rows]
