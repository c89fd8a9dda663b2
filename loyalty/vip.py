"""Paid VIP membership, bought with Telegram Stars: checkout, payments, refunds, earning, gifts and reminders.

Rules:
- An invoice's payload names the member, the period and the offer's version (a digest of the [vip] section), so
  a pre-checkout for an offer that changed since the invoice was sent is refused instead of selling old terms.
- A payment is recorded once by Telegram's ``telegram_payment_charge_id`` (UNIQUE): VIP starts now, or the
  period is added to the end of an active VIP. The member row is locked first, so two different payments at the
  same moment both extend it.
- A refund marks the payment once (a conditional update) and takes its period back from the end of the member's
  VIP, never back past now: a member's only payment refunded ends VIP at once, and the multiplier with it.
- Monthly gifts: one on becoming VIP and one every ``GIFT_INTERVAL`` of unbroken VIP after, claimed as notices
  (kind, member, stretch, number) so each is given and sent once; the ledger key makes the points once too.
- The reminder is claimed per VIP end date: extending VIP moves the end, and the new end gets its own reminder.
  A member whose subscription renews gets none: there is nothing to do.
- Subscriptions (``[vip] renew = "subscription"``): the first payment (``is_first_recurring``) starts a
  ``VipSubscription`` named by its charge id; each renewal (``is_recurring``) is a payment of its own, recorded
  once by its charge id like any other, and extends VIP to the subscription's new expiration date. The member
  cancels and re-enables renewal in /vip (Telegram's ``editUserStarSubscription`` with the first charge id);
  when no renewal arrives, VIP ends with the period and the member is told once (``LAPSE_KIND``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty.ledger import Kind
from loyalty.program import Program, VipRules
from loyalty.rewards import Gift, give_gift
from storage.database import begin_write
from storage.models import Member, Notice, VipPayment, VipSubscription

CURRENCY = "XTR"  # Telegram Stars
GIFT_KIND = "vip_gift"
REMINDER_KIND = "vip_ending"
LAPSE_KIND = "vip_lapsed"
SUBSCRIPTION_PERIOD = timedelta(days=30)  # Telegram's subscription_period: 2592000 seconds, always
# A lapse is told within this long of VIP ending: a scheduler down for longer does not tell of old news.
LAPSE_WINDOW = timedelta(days=7)
# "Monthly" gifts come every 30 days of VIP, so a 30-day period holds exactly one whatever the calendar does.
GIFT_INTERVAL = timedelta(days=30)
_PAYLOAD = re.compile(r"^vip:([0-9]{1,18}):([0-9]{1,3}):([0-9a-f]{12})$")
CHARGE_ID = re.compile(r"^[\w.:-]{1,255}$")


def offer_version(rules: VipRules) -> str:
    """A short digest of everything a member agrees to when paying: any change makes older invoices stale."""
    return hashlib.sha256(rules.model_dump_json().encode()).hexdigest()[:12]


def payload_for(member_id: int, rules: VipRules) -> str:
    return f"vip:{member_id}:{rules.period_days}:{offer_version(rules)}"


@dataclass(frozen=True)
class Payload:
    member_id: int
    period_days: int
    version: str


def parse_payload(text: str) -> Payload | None:
    match = _PAYLOAD.match(text)
    if match is None:
        return None
    return Payload(int(match[1]), int(match[2]), match[3])


async def vip_until_of(session: AsyncSession, member_id: int) -> datetime | None:
    member = await session.get(Member, member_id)
    return member.vip_until if member else None


def is_vip(vip_until: datetime | None, now: datetime) -> bool:
    return vip_until is not None and vip_until > now


def earn_multiplier(program: Program, tier_multiplier: Decimal, vip_until: datetime | None, now: datetime) -> Decimal:
    """The multiplier a purchase at ``now`` earns with: the tier's, combined with VIP's while VIP lasts.

    A VIP that ended (or was refunded) counts for nothing even if the program still offers VIP; a member who paid
    keeps the multiplier of the offer as it is now if the merchant turns VIP off, since they paid for it."""
    rules = program.vip
    if rules is None or not is_vip(vip_until, now):
        return tier_multiplier
    if rules.combine == "max":
        return max(tier_multiplier, rules.multiplier)
    return tier_multiplier * rules.multiplier


# ------------------------------------------------------------------------------------------------ checkout


class CheckoutProblem(StrEnum):
    NOT_OFFERED = "not_offered"
    OFFER_CHANGED = "offer_changed"
    NOT_A_MEMBER = "not_a_member"  # never joined, erased their data, or paying for someone else's invoice


async def check_checkout(
    session: AsyncSession, program: Program, *, telegram_id: int, payload: str, currency: str, total_amount: int
) -> CheckoutProblem | None:
    """Whether Telegram may take this payment: read-only, since the pre-checkout must be answered at once."""
    rules = program.vip_offer
    if rules is None:
        return CheckoutProblem.NOT_OFFERED
    parsed = parse_payload(payload)
    if (
        parsed is None
        or parsed.version != offer_version(rules)
        or parsed.period_days != rules.period_days
        or currency != CURRENCY
        or total_amount != rules.price_stars
    ):
        return CheckoutProblem.OFFER_CHANGED
    member = await session.get(Member, parsed.member_id)
    if member is None or member.erased_at is not None or member.telegram_id != telegram_id:
        return CheckoutProblem.NOT_A_MEMBER
    return None


# ------------------------------------------------------------------------------------------------ payments


@dataclass(frozen=True)
class PaymentResult:
    payment: VipPayment
    created: bool
    vip_until: datetime
    extended: bool  # the member was VIP already and the period was added to its end
    renewal: bool = False  # a subscription's renewal (not its first payment)


async def find_payment(session: AsyncSession, charge_id: str) -> VipPayment | None:
    return (
        await session.execute(select(VipPayment).where(col(VipPayment.telegram_payment_charge_id) == charge_id))
    ).scalar_one_or_none()


async def _locked_member(session: AsyncSession, member_id: int) -> Member | None:
    return (
        await session.execute(
            select(Member)
            .where(col(Member.id) == member_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


async def _payer(session: AsyncSession, telegram_id: int, payload: Payload | None) -> int | None:
    """The member a payment is for: the invoice's, when the payer is that member; else the payer's own row."""
    if payload is not None:
        member = await session.get(Member, payload.member_id)
        if member is not None and member.telegram_id == telegram_id:
            return member.id
    return (
        await session.execute(select(col(Member.id)).where(col(Member.telegram_id) == telegram_id))
    ).scalar_one_or_none()


async def record_payment(
    session: AsyncSession,
    program: Program,
    *,
    telegram_id: int,
    charge_id: str,
    payload: str,
    currency: str,
    amount: int,
    now: datetime,
    recurring: bool = False,
    first_recurring: bool = False,
    expires_at: datetime | None = None,
) -> PaymentResult:
    """Make or extend VIP for a successful payment, once per charge id. Raises LookupError when the payer is no
    member at all (Telegram took the money anyway: the handler sends them to /paysupport).

    A subscription's payment (``recurring``/``first_recurring``) extends VIP at least to Telegram's
    ``expires_at`` (its subscription_expiration_date): a renewal that arrives a little late loses no time."""
    await begin_write(session)
    if (done := await find_payment(session, charge_id)) is not None:
        return await _replayed(session, done)
    parsed = parse_payload(payload)
    member_id = await _payer(session, telegram_id, parsed)
    member = await _locked_member(session, member_id) if member_id is not None else None
    if member is None or member.id is None:
        await session.rollback()
        raise LookupError(telegram_id)
    if (done := await find_payment(session, charge_id)) is not None:  # a concurrent delivery held the lock first
        return await _replayed(session, done)
    # The period the invoice promised, even if the offer changed between pre-checkout and payment.
    period = parsed.period_days if parsed is not None else (program.vip.period_days if program.vip else 30)
    extended = is_vip(member.vip_until, now)
    start = member.vip_until if extended and member.vip_until is not None else now
    until = start + timedelta(days=period)
    subscribed = recurring or first_recurring
    if subscribed and expires_at is not None:
        until = max(until, expires_at)
    renewal = False
    if subscribed:
        renewal = await _note_subscription(session, member.id, charge_id, first_recurring, expires_at or until, now)
    payment = VipPayment(
        member_id=member.id,
        telegram_payment_charge_id=charge_id,
        amount=amount,
        currency=currency[:3],
        payload=payload[:128],
        period_days=period,
        vip_until=until,
        paid_at=now,
    )
    session.add(payment)
    if not extended:
        member.vip_since = now
    member.vip_until = until
    session.add(member)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        winner = await find_payment(session, charge_id)
        if winner is None:
            raise
        return await _replayed(session, winner)
    return PaymentResult(payment, created=True, vip_until=until, extended=extended, renewal=renewal)


async def _note_subscription(
    session: AsyncSession, member_id: int, charge_id: str, first: bool, expires_at: datetime, now: datetime
) -> bool:
    """Start a subscription at its first payment, or move the member's latest one on at a renewal (True)."""
    latest = None if first else await _latest_subscription(session, member_id)
    if latest is None:
        # A first payment, or a renewal of a subscription whose first payment never reached us: it starts here.
        session.add(VipSubscription(member_id=member_id, charge_id=charge_id, started_at=now, expires_at=expires_at))
        return False
    latest.expires_at = max(latest.expires_at, expires_at)
    latest.renewals += 1
    latest.canceled_at = None  # Telegram only renews a subscription that is on
    session.add(latest)
    return True


async def _latest_subscription(session: AsyncSession, member_id: int) -> VipSubscription | None:
    return (
        await session.execute(
            select(VipSubscription)
            .where(col(VipSubscription.member_id) == member_id)
            .order_by(col(VipSubscription.started_at).desc(), col(VipSubscription.id).desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def _replayed(session: AsyncSession, payment: VipPayment) -> PaymentResult:
    until = (
        await session.execute(select(col(Member.vip_until)).where(col(Member.id) == payment.member_id))
    ).scalar_one()
    await session.commit()
    return PaymentResult(payment, created=False, vip_until=until or payment.vip_until, extended=False)


async def payments_of(session: AsyncSession, member_id: int, limit: int = 5) -> list[VipPayment]:
    """The member's latest payments, newest first (for /paysupport)."""
    return list(
        (
            await session.execute(
                select(VipPayment)
                .where(col(VipPayment.member_id) == member_id)
                .order_by(col(VipPayment.paid_at).desc(), col(VipPayment.id).desc())
                .limit(limit)
            )
        ).scalars()
    )


# ------------------------------------------------------------------------------------------------ refunds


class RefundProblem(StrEnum):
    UNKNOWN = "unknown"  # no payment with this charge id
    OTHER_MEMBER = "other_member"  # the charge is another member's
    ALREADY = "already"  # refunded before


class RefundRefused(Exception):
    def __init__(self, problem: RefundProblem, payment: VipPayment | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.payment = payment


async def refundable(session: AsyncSession, member_id: int, charge_id: str) -> VipPayment:
    """The payment staff may refund, checked before asking Telegram to move any Stars."""
    payment = await find_payment(session, charge_id)
    if payment is None:
        raise RefundRefused(RefundProblem.UNKNOWN)
    if payment.member_id != member_id:
        raise RefundRefused(RefundProblem.OTHER_MEMBER, payment)
    if payment.refunded_at is not None:
        raise RefundRefused(RefundProblem.ALREADY, payment)
    return payment


@dataclass(frozen=True)
class RefundResult:
    payment: VipPayment
    changed: bool  # False: the refund was recorded before
    vip_until: datetime | None


async def mark_refunded(
    session: AsyncSession, charge_id: str, *, actor_id: int | None, now: datetime
) -> RefundResult | None:
    """Record that Telegram refunded this charge and take its period back; once. None for an unknown charge."""
    await begin_write(session)
    payment = await find_payment(session, charge_id)
    if payment is None:
        await session.commit()
        return None
    member = await _locked_member(session, payment.member_id)
    assert member is not None  # payments reference members, and member rows are never deleted
    marked = await session.execute(
        update(VipPayment)
        .where(col(VipPayment.id) == payment.id, col(VipPayment.refunded_at).is_(None))
        .values(refunded_at=now, refunded_by=actor_id)
    )
    if not marked.rowcount:  # type: ignore[attr-defined]
        await session.commit()
        return RefundResult(payment, changed=False, vip_until=member.vip_until)
    if is_vip(member.vip_until, now) and member.vip_until is not None:
        # A refunded payment buys nothing: its period comes off the end, and VIP ends now if nothing else is left.
        member.vip_until = max(member.vip_until - timedelta(days=payment.period_days), now)
        session.add(member)
    payment.refunded_at, payment.refunded_by = now, actor_id
    until = member.vip_until
    await session.commit()
    return RefundResult(payment, changed=True, vip_until=until)


# ------------------------------------------------------------------------------------------------ gifts


def _stamp(moment: datetime) -> str:
    return f"{moment:%Y%m%d%H%M%S}"


PAGE = 1000


async def _active(
    session: AsyncSession, now: datetime, until: datetime | None = None, *, reachable: bool = False
) -> AsyncIterator[list[Member]]:
    """VIP members (ending by ``until``, if given) who kept their data, a page at a time in ``vip_until`` order
    (a range on its index): every one of them, however many, is seen on every run."""
    query = select(Member).where(col(Member.vip_until) > now, col(Member.erased_at).is_(None))
    if until is not None:
        query = query.where(col(Member.vip_until) <= until)
    if reachable:
        query = query.where(col(Member.blocked_at).is_(None))
    after: tuple[datetime, int] | None = None
    while True:
        keyset = query if after is None else query.where(tuple_(col(Member.vip_until), col(Member.id)) > after)
        members = list(
            (await session.execute(keyset.order_by(col(Member.vip_until), col(Member.id)).limit(PAGE))).scalars()
        )
        if not members:
            return
        yield members
        last = members[-1]
        assert last.vip_until is not None and last.id is not None
        after = (last.vip_until, last.id)


async def _claimed(session: AsyncSession, kind: str, members: list[Member]) -> set[tuple[int, str, int]]:
    """(telegram id, period, seq) of the notices of this kind already claimed for these members, in one read:
    most runs find every gift or reminder claimed and write nothing."""
    rows = await session.execute(
        select(col(Notice.telegram_id), col(Notice.period), col(Notice.seq)).where(
            col(Notice.kind) == kind, col(Notice.telegram_id).in_([member.telegram_id for member in members])
        )
    )
    return {(telegram_id, period, seq) for telegram_id, period, seq in rows}


@dataclass(frozen=True)
class DueGift:
    member: Member
    stretch: str  # names the unbroken VIP stretch
    number: int  # 0 on becoming VIP, then one more every GIFT_INTERVAL


async def due_gifts(session: AsyncSession, program: Program, now: datetime) -> list[DueGift]:
    rules = program.vip
    if rules is None or not (rules.monthly_bonus or rules.monthly_reward):
        return []
    due = []
    async for members in _active(session, now):
        claimed = await _claimed(session, GIFT_KIND, members)
        for member in members:
            if member.vip_since is None:
                continue
            gift = DueGift(member, _stamp(member.vip_since), (now - member.vip_since) // GIFT_INTERVAL)
            if (member.telegram_id, gift.stretch, gift.number) not in claimed:
                due.append(gift)
    return due


async def give(session: AsyncSession, program: Program, due: DueGift, now: datetime) -> Gift:
    """The gift's points and coupon; the same gift again gives nothing more."""
    rules = program.vip
    member_id = due.member.id
    assert rules is not None and member_id is not None
    return await give_gift(
        session,
        program,
        member_id,
        key=f"vip:{member_id}:{due.stretch}:{due.number}",
        kind=Kind.VIP,
        points=rules.monthly_bonus,
        reward=rules.monthly_reward,
        coupon_days=rules.coupon_days,
        now=now,
    )


# ------------------------------------------------------------------------------------------------ reminders


@dataclass(frozen=True)
class DueReminder:
    member: Member
    ends: datetime
    period: str  # the end date it warns about: a VIP extended later gets a reminder for its new end


async def due_reminders(session: AsyncSession, program: Program, now: datetime) -> list[DueReminder]:
    rules = program.vip
    if rules is None or not rules.reminder_days:
        return []
    due = []
    async for members in _active(session, now, now + timedelta(days=rules.reminder_days), reachable=True):
        claimed = await _claimed(session, REMINDER_KIND, members)
        renewing = await _renewing(session, [member.id for member in members if member.id is not None], now)
        for member in members:
            assert member.vip_until is not None  # selected by it
            if member.id in renewing:
                continue  # Telegram renews it: there is nothing to remind of
            reminder = DueReminder(member, member.vip_until, _stamp(member.vip_until))
            if (member.telegram_id, reminder.period, 0) not in claimed:
                due.append(reminder)
    return due


async def _renewing(session: AsyncSession, member_ids: list[int], now: datetime) -> set[int]:
    """Those of these members whose subscription is on: Telegram will renew it."""
    rows = await session.execute(
        select(col(VipSubscription.member_id)).where(
            col(VipSubscription.member_id).in_(member_ids),
            col(VipSubscription.canceled_at).is_(None),
            col(VipSubscription.expires_at) > now,
        )
    )
    return set(rows.scalars())


# ------------------------------------------------------------------------------------------------ subscriptions


@dataclass(frozen=True)
class Status:
    """What /vip, the app and the console show: VIP's end, and the subscription that renews it (if any)."""

    vip_until: datetime | None
    subscription: VipSubscription | None  # the member's subscription, while its period lasts

    def vip(self, now: datetime) -> bool:
        return is_vip(self.vip_until, now)

    @property
    def renews(self) -> bool:
        return self.subscription is not None and self.subscription.canceled_at is None


async def status_of(session: AsyncSession, member_id: int, now: datetime) -> Status:
    latest = await _latest_subscription(session, member_id)
    current = latest if latest is not None and latest.expires_at > now else None
    return Status(await vip_until_of(session, member_id), current)


class RenewalProblem(StrEnum):
    NO_SUBSCRIPTION = "no_subscription"  # none, or its period is over (subscribe again with the link)
    ALREADY = "already"  # renewal is already off (or on)


class RenewalRefused(Exception):
    def __init__(self, problem: RenewalProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


async def renewal_change(session: AsyncSession, member_id: int, *, renew: bool, now: datetime) -> VipSubscription:
    """The subscription whose renewal may be turned off (``renew=False``) or on again, checked before Telegram is
    asked (editUserStarSubscription); raises RenewalRefused."""
    subscription = (await status_of(session, member_id, now)).subscription
    if subscription is None:
        raise RenewalRefused(RenewalProblem.NO_SUBSCRIPTION)
    if (subscription.canceled_at is None) == renew:
        raise RenewalRefused(RenewalProblem.ALREADY)
    return subscription


async def record_renewal(session: AsyncSession, subscription_id: int, *, renew: bool, now: datetime) -> bool:
    """Store that Telegram turned renewal off or on; False when it already was (a press replayed)."""
    await begin_write(session)
    state = col(VipSubscription.canceled_at).is_not(None) if renew else col(VipSubscription.canceled_at).is_(None)
    changed = await session.execute(
        update(VipSubscription)
        .where(col(VipSubscription.id) == subscription_id, state)
        .values(canceled_at=None if renew else now)
    )
    await session.commit()
    return bool(changed.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DueLapse:
    member: Member
    ended: datetime
    canceled: bool  # the member turned renewal off; else the renewal did not arrive
    period: str


async def due_lapses(session: AsyncSession, now: datetime) -> list[DueLapse]:
    """Members whose subscribed VIP ended lately without a renewal, not told yet (one notice per VIP end)."""
    rows = await session.execute(
        select(Member, VipSubscription)
        .join(VipSubscription, col(VipSubscription.member_id) == col(Member.id))
        .where(
            col(Member.vip_until) <= now,
            col(Member.vip_until) > now - LAPSE_WINDOW,
            col(VipSubscription.expires_at) <= now,
            col(VipSubscription.expires_at) > now - LAPSE_WINDOW,
            col(Member.erased_at).is_(None),
            col(Member.blocked_at).is_(None),
        )
        .order_by(col(Member.id), col(VipSubscription.expires_at).desc())
    )
    latest: dict[int, tuple[Member, VipSubscription]] = {}
    for member, subscription in rows.all():
        latest.setdefault(member.telegram_id, (member, subscription))
    if not latest:
        return []
    claimed = await _claimed(session, LAPSE_KIND, [member for member, _ in latest.values()])
    due = []
    for member, subscription in latest.values():
        assert member.vip_until is not None  # selected by it
        lapse = DueLapse(member, member.vip_until, subscription.canceled_at is not None, _stamp(member.vip_until))
        if (member.telegram_id, lapse.period, 0) not in claimed:
            due.append(lapse)
    return due


@dataclass(frozen=True)
class VipCounts:
    """VIP right now, for /stats and the console: members, and the subscriptions among them."""

    members: int
    renewing: int
    canceled: int  # still running, but will not renew


async def vip_counts(session: AsyncSession, now: datetime) -> VipCounts:
    members = (
        await session.execute(select(func.count()).where(col(Member.vip_until) > now, col(Member.erased_at).is_(None)))
    ).scalar_one()
    rows = await session.execute(
        select(col(VipSubscription.canceled_at).is_(None), func.count())
        .join(Member, col(Member.id) == col(VipSubscription.member_id))
        .where(col(VipSubscription.expires_at) > now, col(Member.erased_at).is_(None))
        .group_by(col(VipSubscription.canceled_at).is_(None))
    )
    counts = {bool(on): int(n) for on, n in rows.all()}
    return VipCounts(members=int(members), renewing=counts.get(True, 0), canceled=counts.get(False, 0))
