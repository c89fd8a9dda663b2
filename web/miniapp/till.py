"""The cashier's till: scan a member, record a purchase, accept a coupon, refund, and this shift's purchases.

The same ``loyalty`` functions and rules as /purchase, /redeem and /refund: amount limits, categories, the
self-purchase refusal, idempotency. Every request checks the role on the server, whatever the page showed."""

from __future__ import annotations

from datetime import timedelta

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiohttp import web
from pydantic import Field

from loyalty import stores
from loyalty.audit import OwnAccount
from loyalty.members import find_member
from loyalty.program import Program
from loyalty.purchases import (
    MAX_ITEMS,
    PurchaseInputError,
    check_purchase,
    from_minor,
    record_purchase,
    recorded_by,
)
from loyalty.refunds import RefundProblem, RefundRefused, receipts, refund
from loyalty.rewards import CouponProblem, normalize_coupon_code, title_for, use_coupon
from loyalty.roles import Permission
from notifications.purchases import announce_purchase, explanation, notify_refund, pending_note
from notifications.refusals import input_problem, other_store_refused, own_account_refused, wrong_store_refused
from notifications.texts import day, locale_of, money, when
from storage.models import Member, Purchase
from web.miniapp.core import (
    LANGUAGE,
    VIEWER,
    Action,
    Model,
    Refused,
    Screen,
    json_of,
    later,
    mount,
    read,
    require,
)
from web.miniapp.member import KEY
from web.services import SERVICES, WebServices

SHIFT = timedelta(hours=16)  # "today's purchases at this till": a long shift, across midnight
MAX_REF = 64


class CategoryOut(Model):
    key: str
    name: str


class TodayOut(Model):
    purchase_id: int
    time: str
    member: str
    amount: str
    points: int
    refundable: bool


class TillOut(Model):
    currency: str
    categories: list[CategoryOut]
    today: list[TodayOut] = Field(description="Purchases this cashier recorded in the last 16 hours, newest first")
    store: str | None = Field(default=None, description="The store this cashier's purchases are recorded at")


def _categories(program: Program, language: str) -> list[CategoryOut]:
    named = {c.key: c.name_in(language) for c in program.profile.categories}
    # A category only a promotion names has no display name: its key, readable ("private-label": "Private label").
    return [
        CategoryOut(key=key, name=named.get(key) or key.replace("-", " ").replace("_", " ").capitalize())
        for key in sorted(program.categories())
    ]


async def load_till(request: web.Request) -> TillOut:
    require(request, Permission.RECORD_PURCHASE)
    services = request.app[SERVICES]
    program, locale = services.program, locale_of(request[LANGUAGE])
    now = services.clock()
    async with services.sessions() as session:
        recent = await recorded_by(session, request[VIEWER].telegram_id, now - SHIFT)
        store = program.store(await stores.of_staff(session, program, request[VIEWER].telegram_id))
    return TillOut(
        currency=program.currency,
        categories=_categories(program, request[LANGUAGE]),
        today=[_today(purchase, member, program, locale) for purchase, member in recent],
        store=store.name_in(request[LANGUAGE]) if store else None,
    )


def _today(purchase: Purchase, member: Member, program: Program, locale: str) -> TodayOut:
    assert purchase.id is not None
    return TodayOut(
        purchase_id=purchase.id,
        time=when(purchase.created_at, program.tz, locale),
        member=member.first_name,
        amount=money(from_minor(purchase.amount_minor, program), program.currency, locale),
        points=purchase.points,
        refundable=purchase.refunded_minor < purchase.amount_minor,
    )


class FoundMember(Model):
    code: str
    first_name: str
    tier: str | None
    points: int


class TillMemberOut(Model):
    member: FoundMember
    currency: str
    categories: list[CategoryOut]
    max_items: int


def _ref(text: str) -> str:
    """A scanned or typed member reference; a QR holds just the code."""
    ref = text.strip()
    if not ref or len(ref) > MAX_REF or not ref.isprintable():
        raise Refused(400, "invalid", _("That is not a member code. Please scan the member's card again."))
    return ref


async def _found(services: WebServices, ref: str) -> Member:
    async with services.sessions() as session:
        member = await find_member(session, ref)
    if member is None or member.id is None:
        raise Refused(404, "member_not_found", _("No member found for {ref}.").format(ref=ref))
    return member


async def load_member(request: web.Request) -> TillMemberOut:
    require(request, Permission.LOOK_UP_MEMBER)
    services = request.app[SERVICES]
    member = await _found(services, _ref(request.query.get("ref", "")))
    tier = services.program.tiers.level(member.tier)
    language = request[LANGUAGE]
    return TillMemberOut(
        member=FoundMember(
            code=member.code,
            first_name=member.first_name,
            tier=tier.name_in(language) if tier else None,
            points=member.points,
        ),
        currency=services.program.currency,
        categories=_categories(services.program, language),
        max_items=MAX_ITEMS,
    )


class TillPurchaseIn(Model):
    member: str = Field(min_length=1, max_length=MAX_REF)
    amount: str = Field(min_length=1, max_length=32)
    category: str | None = Field(default=None, max_length=32)
    items: int = Field(default=1, ge=1, le=MAX_ITEMS)
    receipt: str | None = Field(default=None, max_length=64)
    key: str = Field(pattern=KEY, description="Generated by the page for this submission: a retry records once")


class RecordedOut(Model):
    message: str
    why: str = Field(description='Why it earned what it did, e.g. "64 points: 32 base ×2 Double Afternoons"')
    points: int
    balance: int
    replayed: bool


async def record(request: web.Request) -> web.Response:
    require(request, Permission.RECORD_PURCHASE)
    services = request.app[SERVICES]
    program, locale = services.program, locale_of(request[LANGUAGE])
    body = await read(request, TillPurchaseIn)
    now = services.clock()
    try:
        given = check_purchase(
            program,
            typed=True,
            amount=body.amount,
            now=now,
            category=body.category or None,
            items=body.items,
            receipt=(body.receipt or "").strip() or None,
        )
    except PurchaseInputError as error:
        raise Refused(422, "invalid_purchase", input_problem(error, program, locale)) from error
    member = await _found(services, _ref(body.member))
    assert member.id is not None
    cashier = request[VIEWER].telegram_id
    # The receipt identifies a purchase as in the chat; without one, the key the page made for this submission.
    source, external_id = ("receipt", given.receipt) if given.receipt else ("app", f"{cashier}:{body.key}")
    async with services.sessions() as session:
        try:
            result = await record_purchase(
                session,
                program,
                store=await stores.of_staff(session, program, cashier),
                member_id=member.id,
                amount=given.amount,
                source=source,
                external_id=external_id,
                now=now,
                category=given.category,
                items=given.items,
                recorded_by=cashier,
            )
        except OwnAccount as own:
            raise Refused(403, "own_account", own_account_refused()) from own
    amount = money(given.amount, program.currency, locale)
    if result.created:
        message = ngettext(
            "✅ Recorded {amount} for {name}: +{points} point, balance {balance}.",
            "✅ Recorded {amount} for {name}: +{points} points, balance {balance}.",
            result.points,
        ).format(amount=amount, name=member.first_name, points=result.points, balance=result.balance)
        message += pending_note(result, program, locale, to_member=False)
    else:
        message = _("This purchase was already recorded. Nothing was added.")
    out = RecordedOut(
        message=message,
        why=explanation(result, program, request[LANGUAGE], escape=False).strip(),
        points=result.purchase.points,
        balance=result.balance,
        replayed=not result.created,
    )
    if result.created:  # the cashier's answer does not wait for Telegram
        later(request, announce_purchase(services.bot, services.i18n, member, result, program), "purchase notice")
    return json_of(out, 201 if result.created else 200)


class CouponIn(Model):
    code: str = Field(min_length=1, max_length=64)


class CouponUsedOut(Model):
    message: str
    title: str
    member: str
    member_code: str


async def accept_coupon(request: web.Request) -> web.Response:
    require(request, Permission.REDEEM_COUPON)
    services = request.app[SERVICES]
    program, locale, language = services.program, locale_of(request[LANGUAGE]), request[LANGUAGE]
    body = await read(request, CouponIn)
    code = normalize_coupon_code(body.code)
    if code is None:  # a member card, a web address, anything but a coupon
        raise Refused(404, "no_such_coupon", _("No coupon {code}. Please check the code.").format(code=body.code[:40]))
    cashier = request[VIEWER].telegram_id
    async with services.sessions() as session:
        store = await stores.of_staff(session, program, cashier)
        used = await use_coupon(session, code, cashier_id=cashier, now=services.clock(), program=program, store=store)
    coupon, reward, owner = used.coupon, used.reward, used.owner
    if used.problem is CouponProblem.UNKNOWN or coupon is None or reward is None:
        raise Refused(404, "no_such_coupon", _("No coupon {code}. Please check the code.").format(code=code))
    if used.problem is CouponProblem.USED:
        at = when(coupon.used_at, program.tz, locale) if coupon.used_at else "?"
        raise Refused(409, "used", _("Coupon {code} was already used on {when}.").format(code=code, when=at))
    if used.problem is CouponProblem.EXPIRED:
        expired = day(coupon.expires_at, program.tz, locale)
        raise Refused(409, "expired", _("Coupon {code} expired on {date}.").format(code=code, date=expired))
    if used.problem is CouponProblem.DISABLED:
        raise Refused(409, "disabled", _("That reward is no longer available."))
    if used.problem is CouponProblem.WRONG_STORE:
        raise Refused(409, "wrong_store", wrong_store_refused(program, reward.key, language))
    title = title_for(reward, language)
    name = owner.first_name if owner else ""
    message = _("✅ Coupon accepted: {title} for {name} ({code}).").format(
        title=title, name=name, code=owner.code if owner else ""
    )
    return json_of(CouponUsedOut(message=message, title=title, member=name, member_code=owner.code if owner else ""))


class TillRefundIn(Model):
    purchase_id: int | None = Field(default=None, ge=1, le=2**62)
    receipt: str | None = Field(default=None, min_length=1, max_length=64)
    key: str = Field(pattern=KEY)


class RefundedOut(Model):
    message: str
    points: int
    balance: int
    replayed: bool


async def make_refund(request: web.Request) -> web.Response:
    require(request, Permission.RECORD_PURCHASE)
    services = request.app[SERVICES]
    program, locale = services.program, locale_of(request[LANGUAGE])
    body = await read(request, TillRefundIn)
    cashier = request[VIEWER].telegram_id
    async with services.sessions() as session:
        purchase_id = body.purchase_id
        if purchase_id is None and body.receipt:
            found = await receipts(session, body.receipt.strip())
            if len(found) > 1:
                raise Refused(409, "ambiguous", _("Several purchases have this receipt: refund it in the chat."))
            purchase_id = found[0].id if found else None
        try:
            if purchase_id is None:
                raise RefundRefused(RefundProblem.UNKNOWN)
            result = await refund(
                session,
                program,
                purchase_id=purchase_id,
                amount=None,
                key=f"app-refund:{cashier}:{body.key}",
                actor_id=cashier,
                now=services.clock(),
                store=await stores.of_staff(session, program, cashier),
                actor_role=request[VIEWER].role,
            )
        except OwnAccount as own:
            raise Refused(403, "own_account", own_account_refused()) from own
        except RefundRefused as no:
            why = _refusal(no, program, request[LANGUAGE])
            raise Refused(409 if no.problem is not RefundProblem.UNKNOWN else 404, no.problem.value, why) from no
    refunded = money(from_minor(result.refund.amount_minor, program), program.currency, locale)
    message = ngettext(
        "↩️ Refunded {amount}: −{points} point, the member's balance is {balance}.",
        "↩️ Refunded {amount}: −{points} points, the member's balance is {balance}.",
        result.refund.points,
    ).format(amount=refunded, points=result.refund.points, balance=result.balance)
    if not result.created:
        message = _("This refund was already made. Nothing was changed.")
    elif result.member is not None:
        refunded_minor, points = result.refund.amount_minor, result.refund.points
        notice = notify_refund(
            services.bot, services.i18n, result.member, refunded_minor, points, result.balance, program
        )
        later(request, notice, "refund notice")
    out = RefundedOut(message=message, points=result.refund.points, balance=result.balance, replayed=not result.created)
    return json_of(out, 201 if result.created else 200)


def _refusal(no: RefundRefused, program: Program, language: str) -> str:
    if no.problem is RefundProblem.OTHER_STORE:
        return other_store_refused(program, no.store, language)
    if no.problem is RefundProblem.UNKNOWN:
        return _("No purchase with that receipt.")
    if no.problem is RefundProblem.NOTHING_LEFT:
        return _("This purchase is already fully refunded. Nothing was changed.")
    return _("This refund was already made. Nothing was changed.")


SCREENS = [
    Screen("till", load_till, "till.html", TillOut, "The till: categories and this cashier's recent purchases"),
    Screen("till/member", load_member, "till_member.html", TillMemberOut, "A member by code or @username (?ref=)"),
]
ACTIONS = [
    Action("till/purchases", record, TillPurchaseIn, RecordedOut, "Record a purchase (once per key or receipt)"),
    Action("till/coupons", accept_coupon, CouponIn, CouponUsedOut, "Accept a coupon at the till, once"),
    Action("till/refunds", make_refund, TillRefundIn, RefundedOut, "Refund a purchase fully (once per key)"),
]


def setup(app: web.Application, base: str) -> None:
    mount(app, base, SCREENS, ACTIONS)
