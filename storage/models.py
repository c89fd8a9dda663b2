"""Tables. Times are aware UTC (``storage.clock.utcnow``); money is integer minor units with its currency."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.clock import utcnow


class Member(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    telegram_id: int = Field(sa_column=Column(BigInteger, unique=True, nullable=False))
    chat_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    code: str = Field(max_length=8, unique=True)
    first_name: str = Field(default="", max_length=128)
    last_name: str | None = Field(default=None, max_length=128)
    # Lower-cased so @username look-ups are exact-match index hits.
    username: str | None = Field(default=None, max_length=64, index=True)
    language: str = Field(default="en", max_length=8)
    points: int = 0
    lifetime_points: int = 0
    referred_by_id: int | None = Field(default=None, foreign_key="member.id")
    tier: str | None = Field(default=None, max_length=32, index=True)
    tier_since: datetime | None = None
    # Set when a member was warned they fall short of keeping their tier; cleared when they are back above.
    tier_warned_at: datetime | None = None
    joined_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)


class Purchase(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_purchase_source_external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    source: str = Field(max_length=16)
    external_id: str = Field(max_length=128)
    amount_minor: int
    currency: str = Field(max_length=3)
    category: str | None = Field(default=None, max_length=32)
    items: int = 1
    refunded_minor: int = 0
    base_points: int = 0
    points: int = 0
    # The promotion that applied (its name counts towards per-member limits) and how: "×2" or "+50".
    promotion: str | None = Field(default=None, max_length=48, index=True)
    promotion_detail: str | None = Field(default=None, max_length=16)
    recorded_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    occurred_at: datetime = Field(default_factory=utcnow)
    created_at: datetime = Field(default_factory=utcnow)


class LedgerEntry(SQLModel, table=True):
    """One change of a member's points. Append-only except ``remaining`` on earn lots.

    A positive entry is a lot: ``remaining`` is what is left of it to spend or expire.
    """

    __tablename__ = "ledger_entry"
    __table_args__ = (
        # The expiry job and the spend path both look for a member's open lots, soonest expiry first.
        Index("ix_ledger_open_lots", "member_id", "expires_at", postgresql_where="remaining > 0"),
    )

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    kind: str = Field(max_length=16)
    points: int
    remaining: int = 0
    expires_at: datetime | None = None
    purchase_id: int | None = Field(default=None, foreign_key="purchase.id")
    # Natural key of whatever caused the change; a replay hits the UNIQUE constraint and changes nothing.
    idempotency_key: str | None = Field(default=None, max_length=128, unique=True)
    reason: str | None = Field(default=None, max_length=256)
    actor_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class LotDraw(SQLModel, table=True):
    """Which lot a negative entry (spend, expiry, deduction) took points from, and how many."""

    __tablename__ = "lot_draw"

    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="ledger_entry.id", index=True)
    lot_id: int = Field(foreign_key="ledger_entry.id", index=True)
    points: int


class StaffRole(SQLModel, table=True):
    """Roles granted in the database, on top of those in settings."""

    __tablename__ = "staff_role"

    telegram_id: int = Field(sa_column=Column(BigInteger, primary_key=True))
    role: str = Field(max_length=16)
    granted_at: datetime = Field(default_factory=utcnow)


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    actor_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    action: str = Field(max_length=32)
    member_id: int | None = Field(default=None, foreign_key="member.id", index=True)
    points: int | None = None
    detail: str = Field(default="", max_length=512)
    created_at: datetime = Field(default_factory=utcnow)


class Reward(SQLModel, table=True):
    """Something members buy with points. Rewards from the program file are kept in step by ``key``."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=32, unique=True)
    title: str = Field(max_length=64)
    title_zh_hans: str | None = Field(default=None, max_length=64)
    title_zh_hant: str | None = Field(default=None, max_length=64)
    cost: int
    stock: int | None = None  # None: unlimited
    per_member_limit: int | None = None
    validity_days: int = 30
    min_tier: str | None = Field(default=None, max_length=32)  # only members at this tier or above
    active: bool = True
    from_file: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Coupon(SQLModel, table=True):
    """A single-use coupon issued by a redemption; ``idempotency_key`` makes a replayed confirmation a no-op."""

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=10, unique=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    reward_id: int = Field(foreign_key="reward.id", index=True)
    points: int
    ledger_entry_id: int | None = Field(default=None, foreign_key="ledger_entry.id")
    idempotency_key: str = Field(max_length=128, unique=True)
    issued_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None
    used_by: int | None = Field(default=None, sa_column=Column(BigInteger))


class Campaign(SQLModel, table=True):
    """A time-limited promotion started from chat; evaluated with the same rules as the file's promotions."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=48)
    multiplier: str | None = Field(default=None, max_length=8)  # a decimal as text, e.g. "2" or "1.5"
    bonus: int | None = None
    category: str | None = Field(default=None, max_length=32)
    starts_at: datetime
    ends_at: datetime = Field(index=True)
    ended_at: datetime | None = None
    created_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = Field(default_factory=utcnow)


class Refund(SQLModel, table=True):
    """A full or partial refund of a purchase and the points it took back; ``idempotency_key`` stops replays."""

    id: int | None = Field(default=None, primary_key=True)
    purchase_id: int = Field(foreign_key="purchase.id", index=True)
    amount_minor: int
    points: int
    idempotency_key: str = Field(max_length=128, unique=True)
    actor_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = Field(default_factory=utcnow)


class PunchCard(SQLModel, table=True):
    """A member's current card of one kind: stamps on it now, and how many cards they have filled."""

    __tablename__ = "punch_card"
    __table_args__ = (UniqueConstraint("member_id", "card_key", name="uq_punch_card_member_card"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id")
    card_key: str = Field(max_length=32)
    stamps: int = 0
    completed: int = 0


class Stamp(SQLModel, table=True):
    """The stamps one purchase gave, so a refund can take them back; UNIQUE per purchase and card."""

    __table_args__ = (UniqueConstraint("purchase_id", "card_key", name="uq_stamp_purchase_card"),)

    id: int | None = Field(default=None, primary_key=True)
    purchase_id: int = Field(foreign_key="purchase.id", index=True)
    card_key: str = Field(max_length=32)
    count: int
