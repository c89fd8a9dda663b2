"""/purchase: a cashier records a purchase; the member is told what they earned."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission
from handlers.referral import after_payout
from handlers.ui import card_lines, locale_of, money, tell, when
from loyalty.members import find_member
from loyalty.program import Program
from loyalty.purchases import (
    CATEGORY_RE,
    MAX_ITEMS,
    RECEIPT_RE,
    AmountError,
    AmountProblem,
    PurchaseResult,
    from_minor,
    parse_amount,
    record_purchase,
)
from loyalty.roles import Permission
from storage.database import DbSession
from storage.models import Member, Purchase

log = logging.getLogger(__name__)


def _usage() -> str:
    return (
        _("Usage: {usage}").format(usage=html.escape(_("/purchase <member> <amount> [category] [receipt]")))
        + "\n"
        + _("The member is a member code, a Telegram id or an @username.")
        + "\n"
        + _("Add items=N to count the items, for item-count promotions.")
    )


def amount_problem(error: AmountError, program: Program, locale: str) -> str:
    if error.problem is AmountProblem.NOT_POSITIVE:
        return _("The amount must be more than zero.")
    if error.problem is AmountProblem.TOO_PRECISE:
        return _("The amount can have at most {digits} decimal places.").format(digits=program.minor_digits)
    if error.problem is AmountProblem.TOO_LARGE and error.limit is not None:
        return _("The amount is above the limit of {limit} for one purchase. Please check it.").format(
            limit=money(error.limit, program.currency, locale)
        )
    return _("The amount must be a number like 12.50.")


async def purchase(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    words = (command.args or "").split()
    # "items=3" may stand anywhere after the member; it feeds item-count promotions.
    counts = [w for w in words if w.lower().startswith("items=")]
    args = [w for w in words if w not in counts]
    if not 2 <= len(args) <= 4 or len(counts) > 1:
        await message.answer(_usage())
        return
    ref, amount_text = args[0], args[1]
    category = args[2] if len(args) > 2 else None
    receipt = args[3] if len(args) > 3 else None
    locale = i18n.current_locale
    try:
        amount = parse_amount(amount_text, program)
    except AmountError as error:
        await message.answer(amount_problem(error, program, locale))
        return
    items = 1
    if counts:
        count_text = counts[0].split("=", 1)[1]
        if not count_text.isdecimal() or not 1 <= int(count_text) <= MAX_ITEMS:
            await message.answer(_("The number of items must be a whole number from 1 to {max}.").format(max=MAX_ITEMS))
            return
        items = int(count_text)
    if category is not None and not CATEGORY_RE.match(category):
        await message.answer(_("The category may use letters, digits, - and _ (up to 32)."))
        return
    if receipt is not None and not RECEIPT_RE.match(receipt):
        await message.answer(_("The receipt number may use letters, digits and . / : # - _ (up to 64)."))
        return
    member = await find_member(session, ref)
    if member is None:
        await message.answer(_("No member found for {ref}.").format(ref=html.escape(ref)))
        return
    # Without a receipt the Telegram message itself is the key, so a redelivered update awards nothing twice.
    source, external_id = ("receipt", receipt) if receipt else ("telegram", f"{message.chat.id}:{message.message_id}")
    assert member.id is not None
    result = await record_purchase(
        session,
        program,
        member_id=member.id,
        amount=amount,
        source=source,
        external_id=external_id,
        now=clock(),
        category=category.lower() if category else None,
        items=items,
        recorded_by=message.from_user.id if message.from_user else None,
    )
    if not result.created:
        await message.answer(_already_recorded(result, receipt, program, locale))
        return
    await message.answer(
        _("✅ Recorded {amount} for {name} (<code>{code}</code>): +{points} points, balance {balance}.").format(
            amount=money(amount, program.currency, locale),
            name=html.escape(member.first_name),
            code=member.code,
            points=result.points,
            balance=result.balance,
        )
        + _explanation(result.purchase)
    )
    if not await announce_purchase(bot, i18n, member, result, program):
        await message.answer(_("The member could not be notified in Telegram."))


async def announce_purchase(bot: Bot, i18n: I18n, member: Member, result: PurchaseResult, program: Program) -> bool:
    """After a new purchase: tell the member, and a referrer what the purchase paid them. Shared by /purchase and
    the purchases API so both notify alike. False if the member could not be told."""
    notified = await notify_purchase(bot, i18n, member, result, program)
    if result.referral is not None:
        await after_payout(bot, i18n, program, result.referral)
    return notified


def _explanation(purchase: Purchase) -> str:
    """Why the purchase earned what it did, e.g. "64 points: 32 base ×2 Double Afternoons"."""
    if not purchase.promotion:
        return ""
    return "\n" + _("{total} points: {base} base {detail} {promotion}").format(
        total=purchase.points,
        base=purchase.base_points,
        detail=purchase.promotion_detail or "",
        promotion=html.escape(purchase.promotion),
    )


def _already_recorded(result: PurchaseResult, receipt: str | None, program: Program, locale: str) -> str:
    recorded = result.purchase
    details = {
        "when": when(recorded.created_at, program.tz, locale),
        "amount": money(from_minor(recorded.amount_minor, program), recorded.currency, locale),
        "points": recorded.points,
    }
    if receipt:
        return _(
            "Receipt {receipt} was already recorded on {when} ({amount}, {points} points). Nothing was added."
        ).format(receipt=html.escape(receipt), **details)
    return _("This purchase was already recorded on {when} ({amount}, {points} points). Nothing was added.").format(
        **details
    )


async def notify_purchase(bot: Bot, i18n: I18n, member: Member, result: PurchaseResult, program: Program) -> bool:
    """Tell the member what a purchase earned (from /purchase and the purchases API alike)."""
    locale = locale_of(member.language)

    def render() -> str:
        amount = money(from_minor(result.purchase.amount_minor, program), program.currency, locale)
        if result.points:
            text: str = _("🧾 Thank you for your purchase of {amount}! You earned <b>{points}</b> points.").format(
                amount=amount, points=result.points
            )
        else:
            text = _("🧾 Thank you for your purchase of {amount}!").format(amount=amount)
        text += _explanation(result.purchase)
        if result.winback_bonus:
            text += "\n" + _("🎁 Welcome back! +{points} bonus points.").format(points=result.winback_bonus)
        text += "\n" + _("Your balance: {balance} points.").format(balance=result.balance)
        text += "".join("\n" + line for line in card_lines(result.cards))
        if result.promoted is not None:
            text += "\n" + _("🏅 Congratulations, you are now {tier}! {perks}").format(
                tier=html.escape(result.promoted.name_in(member.language)), perks=html.escape(result.promoted.perks)
            )
        return text

    return await tell(bot, i18n, member, render)


def router() -> Router:
    router = Router(name="purchase")
    router.message.register(purchase, Command("purchase"), HasPermission(Permission.RECORD_PURCHASE))
    return router
