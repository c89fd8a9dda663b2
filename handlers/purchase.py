"""/purchase: a cashier records a purchase; the member is told what they earned."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, Router
from aiogram.filters import CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission, slash
from loyalty import stores
from loyalty.audit import OwnAccount
from loyalty.members import find_member
from loyalty.program import Program
from loyalty.purchases import (
    AmountError,
    PurchaseInputError,
    PurchaseResult,
    check_purchase,
    from_minor,
    is_currency_mark,
    parse_amount,
    record_purchase,
    typed_amount,
)
from loyalty.roles import Permission
from notifications.purchases import announce_purchase, explanation, pending_note
from notifications.refusals import input_problem, own_account_refused
from notifications.texts import money, when
from storage.database import DbSession

log = logging.getLogger(__name__)


def _usage() -> str:
    return (
        _("Usage: {usage}").format(usage=html.escape(_("/purchase <member> <amount> [category] [receipt]")))
        + "\n"
        + _("The member is a member code, a Telegram id or an @username.")
        + "\n"
        + _("Add items=N to count the items, for item-count promotions.")
    )


async def purchase(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    # A currency written apart ("12 元") belongs to the amount, not in the category's place.
    words = [w for w in (command.args or "").split() if not is_currency_mark(w, program)]
    # "items=3" may stand anywhere after the member; it feeds item-count promotions.
    counts = [w for w in words if w.lower().startswith("items=")]
    args = [w for w in words if w not in counts]
    if not 2 <= len(args) <= 4 or len(counts) > 1:
        await message.answer(_usage())
        return
    if _is_amount(args[0], program) and not _is_amount(args[1], program):
        args[0], args[1] = args[1], args[0]  # "/purchase 12.50 EABCYQBT": the amount came first
    ref = args[0]
    category = args[2] if len(args) > 2 else None
    receipt = args[3] if len(args) > 3 else None
    if receipt is None and category is not None and _receipt_not_category(category, program):
        category, receipt = None, category  # "/purchase EABCYQBT 10 R-9": a receipt, not a category
    locale = i18n.current_locale
    try:
        given = check_purchase(
            program,
            typed=True,
            amount=args[1],
            now=clock(),
            category=category,
            items=counts[0].split("=", 1)[1] if counts else 1,
            receipt=receipt,
        )
    except PurchaseInputError as error:
        await message.answer(input_problem(error, program, locale))
        return
    member = await find_member(session, ref)
    if member is None:
        await message.answer(_("No member found for {ref}.").format(ref=html.escape(ref)))
        return
    receipt = given.receipt
    # Without a receipt the Telegram message itself is the key, so a redelivered update awards nothing twice.
    source, external_id = ("receipt", receipt) if receipt else ("telegram", f"{message.chat.id}:{message.message_id}")
    assert member.id is not None
    cashier = message.from_user.id if message.from_user else None
    try:
        result = await record_purchase(
            session,
            program,
            store=await stores.of_staff(session, program, cashier),
            member_id=member.id,
            amount=given.amount,
            source=source,
            external_id=external_id,
            now=clock(),
            category=given.category,
            items=given.items,
            recorded_by=cashier,
        )
    except OwnAccount:
        await message.answer(own_account_refused())
        return
    if not result.created:
        await message.answer(_already_recorded(result, receipt, program, locale))
        return
    await message.answer(
        ngettext(
            "✅ Recorded {amount} for {name} (<code>{code}</code>): +{points} point, balance {balance}.",
            "✅ Recorded {amount} for {name} (<code>{code}</code>): +{points} points, balance {balance}.",
            result.points,
        ).format(
            amount=money(given.amount, program.currency, locale),
            name=html.escape(member.first_name),
            code=member.code,
            points=result.points,
            balance=result.balance,
        )
        + explanation(result, program, locale.replace("_", "-"))
        + pending_note(result, program, locale, to_member=False)
    )
    if not await announce_purchase(bot, i18n, member, result, program):
        await message.answer(_("The member could not be notified in Telegram."))


def _receipt_not_category(word: str, program: Program) -> bool:
    """A lone word after the amount that the program does not name as a category, with a digit in it, is a
    receipt number: categories are words ("coffee"), receipts carry numbers ("R-118")."""
    known = program.categories()
    return bool(known) and word.lower() not in known and any(ch.isdigit() for ch in word)


def _is_amount(word: str, program: Program) -> bool:
    try:
        parse_amount(typed_amount(word, program), program)
    except AmountError:
        return False
    return True


def _already_recorded(result: PurchaseResult, receipt: str | None, program: Program, locale: str) -> str:
    recorded = result.purchase
    details = {
        "when": when(recorded.created_at, program.tz, locale),
        "amount": money(from_minor(recorded.amount_minor, program), recorded.currency, locale),
        "points": recorded.points,
    }
    if receipt:
        return ngettext(
            "Receipt {receipt} was already recorded on {when} ({amount}, {points} point). Nothing was added.",
            "Receipt {receipt} was already recorded on {when} ({amount}, {points} points). Nothing was added.",
            recorded.points,
        ).format(receipt=html.escape(receipt), **details)
    return ngettext(
        "This purchase was already recorded on {when} ({amount}, {points} point). Nothing was added.",
        "This purchase was already recorded on {when} ({amount}, {points} points). Nothing was added.",
        recorded.points,
    ).format(**details)


def router() -> Router:
    router = Router(name="purchase")
    router.message.register(purchase, slash("purchase"), HasPermission(Permission.RECORD_PURCHASE))
    return router
