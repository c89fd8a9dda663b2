"""Refunds: reverse a purchase fully or partly, taking back the points it earned.

Invariants this keeps (on top of the ledger's):
- ``purchase.refunded_minor`` never exceeds ``purchase.amount_minor``; refunding more than is left is refused.
- The points taken back so far are ``floor(points × refunded / amount)``, computed on the running total, so
  several partial refunds take back exactly what one full refund would, with no rounding drift.
- Points still pending (the return window, ``loyalty.pending``) are cancelled first; the rest come from the
  purchase's own lot first, then the member's other lots; what the member already spent
  becomes a negative balance that the next earnings repay first (the merchant does not lose it).
- Each refund carries a key (the Telegram message, or a given id scoped to its API token); the same refund twice
  changes nothing, and the key reused for another refund (another purchase, another amount) is refused.
- A receipt number identifies a purchase within its scope (``loyalty.purchases``); the API refunds only its own
  scope's, the chat finds a receipt in every scope and asks which one when there are several.
- A cashier refunds only their own store's purchases (``loyalty.stores``); admins refund any store's.
- A referred friend's qualifying purchase refunded below the qualifying amount takes back the referral bonuses
  it paid (see ``loyalty.referrals.on_refund``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from loyalty import missions, pending, referrals, stores
from loyalty.audit import refuse_own_account
from loyalty.ledger import claw_back
from loyalty.program import Program
from loyalty.punchcards import unstamp
from loyalty.purchases import to_minor
from loyalty.roles import Role
from storage.database import begin_write
from storage.models import LedgerEntry, Member, Purchase, Refund


class RefundProblem(StrEnum):
    UNKNOWN = "unknown"
    NOTHING_LEFT = "nothing_left"
    TOO_MUCH = "too_much"
    CONFLICT = "conflict"  # the key was used for a different refund
    OTHER_STORE = "other_store"  # a cashier of another store than the purchase's


class RefundRefused(Exception):
    def __init__(self, problem: RefundProblem, refundable_minor: int = 0, store: str | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.refundable_minor = refundable_minor
        self.store = store  # the purchase's store, when refused for being another store's


@dataclass(frozen=True)
class RefundResult:
    refund: Refund
    purchase: Purchase
    balance: int
    created: bool
    member: Member | None = None  # whose purchase it was (a new refund): they are told
    pending_cancelled: int = 0  # of the points taken back, those cancelled while still pending (no debt, no balance)


async def receipts(session: AsyncSession, receipt: str, scope: str | None = None) -> list[Purchase]:
    """The purchases recorded with this receipt number: in ``scope`` only (an API token's), or in every scope."""
    query = select(Purchase).where(col(Purchase.external_id) == receipt, col(Purchase.source).in_(("receipt", "api")))
    if scope is not None:
        query = query.where(col(Purchase.scope) == scope)
    return list((await session.execute(query.order_by(col(Purchase.id)))).scalars())


async def refund(
    session: AsyncSession,
    program: Program,
    *,
    purchase_id: int,
    amount: Decimal | None,
    key: str,
    actor_id: int,
    now: datetime,
    store: str | None = None,
    actor_role: Role = Role.ADMIN,
) -> RefundResult:
    """Refund ``amount`` (None: everything not yet refunded) of the purchase, at ``store`` (where the refund is
    made). A cashier (``actor_role``) of another store than the purchase's is refused (``OTHER_STORE``)."""
    await begin_write(session)
    if (done := await _by_key(session, key)) is not None:
        return await _replayed(session, done, purchase_id, amount, program)
    purchase = (
        await session.execute(select(Purchase).where(col(Purchase.id) == purchase_id).with_for_update())
    ).scalar_one_or_none()
    if purchase is None or purchase.id is None:
        raise RefundRefused(RefundProblem.UNKNOWN)
    if not stores.may_refund(actor_role, store, purchase.store):
        raise RefundRefused(RefundProblem.OTHER_STORE, store=purchase.store)
    receipt = purchase.external_id
    owner = await session.get(Member, purchase.member_id)
    if owner is not None:
        await refuse_own_account(
            session, actor_id=actor_id, member=owner, action="refund", detail=f"{receipt} {amount or 'all'}", now=now
        )
    left = purchase.amount_minor - purchase.refunded_minor
    if left <= 0:
        raise RefundRefused(RefundProblem.NOTHING_LEFT)
    wanted = left if amount is None else to_minor(amount, program)
    if wanted > left:
        raise RefundRefused(RefundProblem.TOO_MUCH, left)
    taken_before = purchase.points * purchase.refunded_minor // purchase.amount_minor
    purchase.refunded_minor += wanted
    points = purchase.points * purchase.refunded_minor // purchase.amount_minor - taken_before
    record = Refund(
        purchase_id=purchase.id,
        amount_minor=wanted,
        points=points,
        idempotency_key=key,
        actor_id=actor_id,
        store=store,
        created_at=now,
    )
    session.add_all([purchase, record])
    try:
        await session.flush()
        await unstamp(session, purchase, (purchase.refunded_minor, purchase.amount_minor))
        balance = await _balance(session, purchase.member_id)
        # Inside the return window the points are still pending: cancelled there, they never become a debt.
        cancelled = await pending.cancel(session, purchase, points)
        if points > cancelled:
            own_lots = [
                lot_id
                for lot_id in (
                    await session.execute(
                        select(col(LedgerEntry.id)).where(
                            col(LedgerEntry.purchase_id) == purchase.id, col(LedgerEntry.points) > 0
                        )
                    )
                ).scalars()
                if lot_id is not None
            ]
            _, balance = await claw_back(
                session,
                purchase.member_id,
                points - cancelled,
                now=now,
                from_lots=own_lots,
                key=f"refund:{record.id}",
                purchase_id=purchase.id,
                actor_id=actor_id,
                reason=f"refund {receipt}"[:256],
            )
        undone = await referrals.on_refund(session, program, purchase, now)
        # Missions the refund undid: the buyer's purchase goals, and the referrer's when a referral was undone.
        affected = [purchase.member_id] + ([undone.referrer_id] if undone is not None else [])
        await missions.on_refund(session, program, affected, now)
        balance = await _balance(session, purchase.member_id)
        await session.commit()
    except IntegrityError:
        await session.rollback()
        if (done := await _by_key(session, key)) is None:
            raise
        return await _replayed(session, done, purchase_id, amount, program)
    return RefundResult(record, purchase, balance, created=True, member=owner, pending_cancelled=cancelled)


async def _by_key(session: AsyncSession, key: str) -> Refund | None:
    return (await session.execute(select(Refund).where(col(Refund.idempotency_key) == key))).scalar_one_or_none()


async def _balance(session: AsyncSession, member_id: int) -> int:
    return int((await session.execute(select(col(Member.points)).where(col(Member.id) == member_id))).scalar_one())


async def _replayed(
    session: AsyncSession, done: Refund, purchase_id: int, amount: Decimal | None, program: Program
) -> RefundResult:
    """The refund this key made already; a request that differs from it (another purchase, another amount) is a
    conflict. Without an amount ("all that is left") any amount matches."""
    if done.purchase_id != purchase_id or (amount is not None and to_minor(amount, program) != done.amount_minor):
        raise RefundRefused(RefundProblem.CONFLICT)
    purchase = await session.get(Purchase, done.purchase_id)
    assert purchase is not None
    return RefundResult(done, purchase, await _balance(session, purchase.member_id), created=False)
