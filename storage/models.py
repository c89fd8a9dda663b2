"""Tables. Times are aware UTC (``storage.clock.utcnow``); money is integer minor units with its currency."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from storage.clock import utcnow


class Member(SQLModel, table=True):
    __table_args__ = (
        Index("ix_member_birthday", "birth_month", "birth_day"),
        Index("ix_member_joined", "joined_at"),  # analytics: new members and join-month cohorts
        # The console's member search: what an admin types is a prefix of the name, the @username or the phone
        # (loyalty.members.search_members). PostgreSQL answers LIKE 'prefix%' only from text_pattern_ops indexes
        # (whatever the database's collation); SQLite answers the same search as a range over plain indexes.
        Index("ix_member_name_prefix", text("lower(first_name) text_pattern_ops")).ddl_if(dialect="postgresql"),
        Index("ix_member_username_prefix", text("username text_pattern_ops")).ddl_if(dialect="postgresql"),
        Index("ix_member_phone_prefix", text("phone text_pattern_ops")).ddl_if(dialect="postgresql"),
        Index("ix_member_name_lower", text("lower(first_name)")).ddl_if(dialect="sqlite"),
        Index("ix_member_phone", "phone").ddl_if(dialect="sqlite"),
    )

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
    # Points of purchases still inside the return window ([earn] pending_days): not spendable, not in ``points``;
    # the sum of their purchases' ``pending_points`` (loyalty.pending).
    pending_points: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    referred_by_id: int | None = Field(default=None, foreign_key="member.id")
    tier: str | None = Field(default=None, max_length=32, index=True)
    tier_since: datetime | None = None
    # Set when a member was warned they fall short of keeping their tier; cleared when they are back above.
    tier_warned_at: datetime | None = None
    joined_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    # Profile. The year is optional (members may give only MM-DD); month and day are what birthday offers use.
    birth_year: int | None = None
    birth_month: int | None = None
    birth_day: int | None = None
    phone: str | None = Field(default=None, max_length=32)
    favourites: str = Field(default="", max_length=512)  # comma-separated category keys from the program file
    profile_completed_at: datetime | None = None
    # Preferences and reachability: broadcasts and nudges go only to members with promotions on, not blocked,
    # not erased.
    promotions: bool = True
    blocked_at: datetime | None = None
    erased_at: datetime | None = None
    # The member's forum topic in the support chat: one per member, reused by every thread.
    support_topic_id: int | None = Field(default=None, index=True)
    # Win-back state: when the next nudge is due (None: none planned), how many this lapse has had, and the
    # bonus a purchase before ``winback_bonus_until`` earns. A purchase resets all of it.
    next_nudge_at: datetime | None = Field(default=None, index=True)
    winback_nudges: int = 0
    winback_bonus: int = 0
    winback_bonus_until: datetime | None = None
    # Paid VIP: VIP while ``vip_until`` is in the future. ``vip_since`` starts an unbroken VIP stretch (paying
    # again before the end extends it); monthly gifts count months from it.
    vip_until: datetime | None = Field(default=None, index=True)
    vip_since: datetime | None = None
    # The evening reminder to check in ([checkin] reminder_hour): opt-in, and still only with promotions on.
    checkin_reminders: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})


class Purchase(SQLModel, table=True):
    __table_args__ = (
        # A receipt identifies one purchase within its scope: the chat, or the name of the API token that sent it.
        UniqueConstraint("scope", "source", "external_id", name="uq_purchase_scope_receipt"),
        Index("ix_purchase_external_id", "external_id"),  # /refund finds a receipt in every scope
        # Analytics read purchases by when they happened; on PostgreSQL the index alone answers them.
        Index(
            "ix_purchase_occurred", "occurred_at", "member_id", postgresql_include=["amount_minor", "refunded_minor"]
        ),
        # The release job's look-up: purchases with points still pending, soonest available first.
        Index(
            "ix_purchase_pending",
            "available_at",
            sqlite_where=text("pending_points > 0"),
            postgresql_where=text("pending_points > 0"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    scope: str = Field(default="chat", max_length=32, sa_column_kwargs={"server_default": "chat"})
    source: str = Field(max_length=16)  # receipt or telegram (the chat: by receipt, or by the message), api
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
    # The campaign started in chat that applied, if one did: members read its name in their language through it.
    # No foreign key: campaigns are never deleted, and adding one would rebuild this table on SQLite (migration 0015).
    campaign_id: int | None = None
    # The program revision the purchase was evaluated under (``program_revision.number``); None: recorded before
    # the program was kept in the database (migration 0016).
    program_revision: int | None = None
    recorded_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    # The return window ([earn] pending_days): when the points become available (None: they were at once), and how
    # many are still pending (the purchase's points less what refunds cancelled; 0 once released).
    available_at: datetime | None = None
    pending_points: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # The [[stores]] key where it happened (the cashier's store, the API token's, or given); None: no stores.
    store: str | None = Field(default=None, max_length=32, index=True)
    occurred_at: datetime = Field(default_factory=utcnow)
    created_at: datetime = Field(default_factory=utcnow, index=True)  # surveys select recent purchases by it


class LedgerEntry(SQLModel, table=True):
    """One change of a member's points. Append-only except ``remaining`` on earn lots.

    A positive entry is a lot: ``remaining`` is what is left of it to spend or expire.
    """

    __tablename__ = "ledger_entry"
    __table_args__ = (
        # The expiry job and the spend path both look for a member's open lots, soonest expiry first.
        Index("ix_ledger_open_lots", "member_id", "expires_at", postgresql_where="remaining > 0"),
        # The expiry warning looks for open lots by expiry date across all members.
        Index(
            "ix_ledger_open_expiry",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
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


class StaffStore(SQLModel, table=True):
    """The store a staff member works at (``/staff store``): their purchases, refunds and coupons are recorded
    there. Kept apart from roles, which can come from settings too."""

    __tablename__ = "staff_store"

    telegram_id: int = Field(sa_column=Column(BigInteger, primary_key=True))
    store: str = Field(max_length=32)
    assigned_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    assigned_at: datetime = Field(default_factory=utcnow)


class StaffInvite(SQLModel, table=True):
    """A one-time link that makes whoever opens it staff (``/staff invite``). Only the token's SHA-256 is kept: the
    link itself lives in the admin's chat. ``used_by`` is set once, by a conditional update."""

    __tablename__ = "staff_invite"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    role: str = Field(max_length=16)
    created_by: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    used_at: datetime | None = None


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
    used_store: str | None = Field(default=None, max_length=32)  # the store whose till accepted it


class Campaign(SQLModel, table=True):
    """A time-limited promotion started from chat; evaluated with the same rules as the file's promotions."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=48)
    # Its name for members reading Chinese (/campaign name), else they read ``name``.
    name_zh_hans: str | None = Field(default=None, max_length=48)
    name_zh_hant: str | None = Field(default=None, max_length=48)
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
    store: str | None = Field(default=None, max_length=32)  # where the refund was made
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


class Referral(SQLModel, table=True):
    """A friend who joined through a member's link; UNIQUE(friend) links a friend to one referrer, once.

    ``review`` is None when no review is needed, else "pending", "approved" or "rejected" (a burst of joins
    through one link). The friend's and the referrer's bonuses are ledger entries with their own idempotency
    keys, so each is paid at most once whatever the order of purchase and review.
    """

    id: int | None = Field(default=None, primary_key=True)
    referrer_id: int = Field(foreign_key="member.id", index=True)
    friend_id: int = Field(foreign_key="member.id", unique=True)
    review: str | None = Field(default=None, max_length=16, index=True)
    reviewed_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    qualified_at: datetime | None = None  # the friend's first qualifying purchase
    purchase_id: int | None = Field(default=None, foreign_key="purchase.id")
    friend_points: int = 0
    referrer_points: int = 0
    referrer_paid_at: datetime | None = Field(default=None, index=True)
    capped: bool = False  # qualified while the referrer was over the monthly cap: not paid
    created_at: datetime = Field(default_factory=utcnow, index=True)


class ReferralVisit(SQLModel, table=True):
    """Someone opened a member's link (the "invited" count), once per person and link."""

    __tablename__ = "referral_visit"
    __table_args__ = (UniqueConstraint("referrer_id", "telegram_id", name="uq_referral_visit"),)

    id: int | None = Field(default=None, primary_key=True)
    referrer_id: int = Field(foreign_key="member.id")
    telegram_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Submission(SQLModel, table=True):
    """Member content sent for points: a link to a public post, a review text or a photo (its file id).

    ``link_hash`` (a digest of the normalised link) is UNIQUE so the same post is paid once, and it survives
    the erasure of ``content``.
    """

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    kind: str = Field(max_length=8)
    content: str = Field(default="", max_length=2048)
    link_hash: str | None = Field(default=None, max_length=64, unique=True)
    status: str = Field(default="pending", max_length=16)
    reason: str | None = Field(default=None, max_length=32)
    points: int = 0
    decided_by: int | None = Field(default=None, sa_column=Column(BigInteger))
    decided_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Thread(SQLModel, table=True):
    """A conversation between a member and the support desk; reopened when the member writes again."""

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    status: str = Field(default="open", max_length=8, index=True)
    opened_at: datetime = Field(default_factory=utcnow)
    first_response_at: datetime | None = None
    # The first member message not answered yet; None while nobody waits.
    waiting_since: datetime | None = Field(default=None, index=True)
    overdue_reported_at: datetime | None = None
    closed_at: datetime | None = None
    rating: int | None = None  # the member's 1–5 rating of the answer, asked on closing
    rated_at: datetime | None = None
    store: str | None = Field(default=None, max_length=32)  # the store it is about, tagged by support staff


class ThreadMessage(SQLModel, table=True):
    """One message of a thread. ``source_key`` (chat and message id it came from) is UNIQUE: replays relay once."""

    __tablename__ = "thread_message"

    id: int | None = Field(default=None, primary_key=True)
    thread_id: int = Field(foreign_key="thread.id", index=True)
    direction: str = Field(max_length=3)  # "in" from the member, "out" from staff
    kind: str = Field(max_length=16)  # text, photo, voice, ... as Telegram names the content
    text: str | None = Field(default=None, max_length=16384)  # as HTML (escaping grows it); erased with the data
    file_id: str | None = Field(default=None, max_length=256)
    score: int | None = None  # an NPS score this message reports (a detractor's alert)
    source_key: str = Field(max_length=64, unique=True)
    author_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = Field(default_factory=utcnow)


class StaffPost(SQLModel, table=True):
    """A message the bot posted in the staff chat for a thread, so a staff reply to it finds the thread."""

    __tablename__ = "staff_post"
    __table_args__ = (UniqueConstraint("chat_id", "message_id", name="uq_staff_post"),)

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    message_id: int
    thread_id: int = Field(foreign_key="thread.id", index=True)


class Survey(SQLModel, table=True):
    """An NPS survey sent after a purchase: UNIQUE(purchase) sends it once; the answer is recorded once."""

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    purchase_id: int | None = Field(default=None, foreign_key="purchase.id", unique=True)
    sent_at: datetime = Field(default_factory=utcnow, index=True)
    message_id: int | None = None
    score: int | None = None
    reason: str | None = Field(default=None, max_length=1024)
    scored_at: datetime | None = None
    finished_at: datetime | None = None  # the reason was given or skipped: the answer is final


class Notice(SQLModel, table=True):
    """A scheduled message claimed for a recipient: UNIQUE(kind, recipient, period, seq) sends it at most once,
    however many schedulers run. ``period`` names the occasion: the year of a birthday, the start of a lapse,
    the day points expire, the week of a digest."""

    __table_args__ = (UniqueConstraint("kind", "telegram_id", "period", "seq", name="uq_notice"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    telegram_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    period: str = Field(max_length=32)
    seq: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class SchedulerLease(SQLModel, table=True):
    """Which scheduler instance may run jobs, until when. Another one takes over once it expires."""

    __tablename__ = "scheduler_lease"

    name: str = Field(primary_key=True, max_length=32)
    holder: str = Field(max_length=64)
    expires_at: datetime


class Broadcast(SQLModel, table=True):
    """A promotional message to a segment. ``content`` is JSON: one variant per language ("default" first)."""

    id: int | None = Field(default=None, primary_key=True)
    created_by: int = Field(sa_column=Column(BigInteger, nullable=False))
    status: str = Field(default="scheduled", max_length=16, index=True)  # scheduled running paused done cancelled
    content: str = Field(max_length=20_000)
    segment: str = Field(default="{}", max_length=2000)  # JSON of loyalty.segments.Segment
    total: int = 0
    scheduled_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The admin's progress message, edited while the broadcast runs.
    status_chat_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    status_message_id: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # The console's request key: a create sent twice (a double tap, a retry) finds the first broadcast.
    key: str | None = Field(default=None, max_length=64, unique=True)
    # The share of the audience kept back as a randomized holdout (0: none); drawn at creation (HoldoutDraw).
    holdout: float = Field(default=0, sa_column_kwargs={"server_default": "0"})


class Delivery(SQLModel, table=True):
    """One member's copy of a broadcast. UNIQUE(broadcast, member): a member is sent a broadcast at most once.

    pending → sending (claimed) → sent | failed | blocked; a row found still "sending" after a crash becomes
    "unknown" and is not sent again.
    """

    __table_args__ = (
        UniqueConstraint("broadcast_id", "member_id", name="uq_delivery"),
        Index("ix_delivery_queue", "broadcast_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    broadcast_id: int = Field(foreign_key="broadcast.id")
    member_id: int = Field(foreign_key="member.id")
    status: str = Field(default="pending", max_length=8)
    claimed_at: datetime | None = None
    attempts: int = 0
    message_id: int | None = None
    error: str | None = Field(default=None, max_length=200)
    sent_at: datetime | None = None


class HoldoutDraw(SQLModel, table=True):
    """One eligible member of a campaign that keeps a randomized holdout, and the arm they were drawn into, stored
    when the audience is fixed (a broadcast's creation, a birthday or win-back run) so the effect report reads facts.
    UNIQUE(kind, campaign, member): a re-run finds the draw and decides nothing again. ``campaign`` names the
    occasion: a broadcast's id, a birthday's year, a win-back lapse (the member's last activity)."""

    __tablename__ = "holdout_draw"
    __table_args__ = (
        UniqueConstraint("kind", "campaign", "member_id", name="uq_holdout_draw"),
        Index("ix_holdout_draw_member", "member_id", "kind", "id"),  # a member's previous draw of a kind
        Index("ix_holdout_draw_start", "kind", "starts_at"),  # the report: a kind's draws in a period
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # "birthday" | "winback" | "broadcast"
    campaign: str = Field(max_length=40)
    member_id: int = Field(foreign_key="member.id")
    held_out: bool
    starts_at: datetime  # when the message goes (or would have gone) out: the outcome window opens here
    drawn_at: datetime = Field(default_factory=utcnow)


class StatsSnapshot(SQLModel, table=True):
    """The /stats figures for a standard period, as the scheduler last computed them: on a large program a
    dashboard takes seconds of database work, so admins get the last snapshot when it is fresh."""

    __tablename__ = "stats_snapshot"

    label: str = Field(primary_key=True, max_length=8)  # "7d", "30d", "90d", "12m"
    computed_at: datetime
    payload: str = Field(sa_column=Column(Text, nullable=False))  # loyalty.metrics.Dashboard as JSON


class VipPayment(SQLModel, table=True):
    """A Telegram Stars payment for VIP. UNIQUE ``telegram_payment_charge_id``: Telegram may deliver the same
    payment twice, and it is recorded (and extends VIP) once; a refund is marked here once too."""

    __tablename__ = "vip_payment"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    telegram_payment_charge_id: str = Field(max_length=255, unique=True)
    amount: int  # in Stars (currency XTR has no minor unit)
    currency: str = Field(default="XTR", max_length=3)
    payload: str = Field(max_length=128)
    period_days: int
    vip_until: datetime  # the member's VIP end right after this payment
    paid_at: datetime = Field(default_factory=utcnow)
    refunded_at: datetime | None = None
    refunded_by: int | None = Field(default=None, sa_column=Column(BigInteger))  # None: refunded outside the bot


class VipSubscription(SQLModel, table=True):
    """A Telegram Stars subscription to VIP (``[vip] renew = "subscription"``), named by its first payment's charge
    id (UNIQUE: the first payment delivered twice starts one subscription). Telegram renews it every 30 days; each
    renewal is a ``VipPayment`` of its own that moves ``expires_at``. ``canceled_at``: the member turned renewal
    off in /vip (``editUserStarSubscription``); None again when they turned it back on."""

    __tablename__ = "vip_subscription"

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    charge_id: str = Field(max_length=255, unique=True)  # the first payment's telegram_payment_charge_id
    started_at: datetime
    expires_at: datetime  # the end of the period paid so far: the next renewal is due then
    renewals: int = 0
    canceled_at: datetime | None = None


class ProgramRevision(SQLModel, table=True):
    """The program, numbered: what ``program.example.toml`` holds, as JSON (``loyalty.revisions``). The highest
    number is in force; a rollback is a new revision with an old one's content. The number is the primary key
    and each is the one after the last, so two editors saving on the same revision cannot both succeed."""

    __tablename__ = "program_revision"

    number: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    program: str = Field(sa_column=Column(Text, nullable=False))  # loyalty.program.program_data as JSON
    based_on: int | None = None  # the revision in force when it was made (its editor started from that one)
    restores: int | None = None  # a rollback: the revision whose content it brings back
    author: str = Field(max_length=16)  # "file" (the first), "cli", "telegram"
    author_id: int | None = Field(default=None, sa_column=Column(BigInteger))  # the Telegram user, if one
    note: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow)


class Checkin(SQLModel, table=True):
    """A member's daily check-in: UNIQUE(member, local day) makes it once a day whatever the taps and devices.
    Streaks are read from consecutive days (``loyalty.checkin``), never kept as a counter."""

    __table_args__ = (UniqueConstraint("member_id", "local_day", name="uq_checkin_member_day"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id")
    local_day: date  # in the program's timezone, as [checkin] day_starts draws the line
    made_up: bool = False  # a make-up check-in for a missed day, paid in points
    points: int = 0  # what it paid, its milestones included (the monthly cap sums these)
    created_at: datetime = Field(default_factory=utcnow, index=True)


class MissionPayment(SQLModel, table=True):
    """A mission reached and paid: UNIQUE(member, mission, period) pays once under replays and concurrent
    purchases. A refund that undoes the goal takes the points back (``clawed_back_at``); reaching it again in
    the same period pays again, as payment number ``times``."""

    __tablename__ = "mission_payment"
    __table_args__ = (UniqueConstraint("member_id", "mission_key", "period_start", name="uq_mission_payment"),)

    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id")
    mission_key: str = Field(max_length=32)
    period_start: date  # the local first day of the week, month or dated window
    points: int = 0
    times: int = 1
    clawed_back_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
