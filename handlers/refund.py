"""/refund: a cashier reverses a purchase by its receipt, fully or partly. A receipt number recorded in more than
one scope (the chat and a till's API token, or two shops' tokens) is never guessed: the cashier picks which."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from aiogram import Bot, Router
from aiogram.filters import CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _
from pydantic import Field

from handlers.filters import HasPermission, slash
from handlers.ui import edit_or_keep
from loyalty import stores
from loyalty.audit import OwnAccount
from loyalty.numbers import MAX_ID, RowId
from loyalty.program import Program
from loyalty.purchases import CHAT_SCOPE, RECEIPT_RE, AmountError, from_minor, parse_amount, to_minor, typed_amount
from loyalty.refunds import RefundProblem, RefundRefused, receipts, refund
from loyalty.roles import Permission, Role
from notifications.purchases import notify_refund
from notifications.refusals import amount_problem, other_store_refused, own_account_refused
from notifications.texts import day, money
from storage.database import DbSession
from storage.models import Purchase


class RefundPick(CallbackData, prefix="rf"):
    """One of several purchases with the receipt number; ``amount_minor`` -1 refunds all that is left."""

    purchase_id: RowId
    amount_minor: Annotated[int, Field(ge=-1, le=MAX_ID)]


def _usage() -> str:
    return _("Usage: {usage}").format(usage=html.escape(_("/refund <receipt> [amount]")))


async def refund_purchase(
    message: Message,
    command: CommandObject,
    bot: Bot,
    session: DbSession,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
    role: Role,
) -> None:
    args = (command.args or "").split()
    if not 1 <= len(args) <= 2 or not RECEIPT_RE.match(args[0]):
        await message.answer(_usage())
        return
    locale = i18n.current_locale
    amount = None
    if len(args) == 2:
        try:
            amount = parse_amount(typed_amount(args[1], program), program)
        except AmountError as error:
            await message.answer(amount_problem(error, program, locale))
            return
    found = await receipts(session, args[0])
    if len(found) > 1:
        await message.answer(
            _("Receipt {receipt} was recorded more than once. Which purchase is refunded?").format(
                receipt=html.escape(args[0])
            ),
            reply_markup=_choices(found, amount, program, locale),
        )
        return
    purchase_id = found[0].id if found else None
    key = f"refund:{message.chat.id}:{message.message_id}"
    actor = message.from_user.id if message.from_user else 0
    text = await _refund(session, program, bot, i18n, purchase_id, args[0], amount, key, actor, role, clock())
    await message.answer(text)


def _choices(found: list[Purchase], amount: Decimal | None, program: Program, locale: str) -> InlineKeyboardMarkup:
    wanted = -1 if amount is None else to_minor(amount, program)
    rows = [
        [
            InlineKeyboardButton(
                text=_("{scope} · {date} · {amount}").format(
                    scope=_("chat") if purchase.scope == CHAT_SCOPE else purchase.scope,
                    date=day(purchase.occurred_at, program.tz, locale),
                    amount=money(from_minor(purchase.amount_minor, program), purchase.currency, locale),
                ),
                callback_data=RefundPick(purchase_id=purchase.id or 0, amount_minor=wanted).pack(),
            )
        ]
        for purchase in found
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def pick_purchase(
    query: CallbackQuery,
    callback_data: RefundPick,
    bot: Bot,
    session: DbSession,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
    role: Role,
) -> None:
    if not isinstance(query.message, Message):
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    purchase = await session.get(Purchase, callback_data.purchase_id)
    amount = None if callback_data.amount_minor < 0 else from_minor(callback_data.amount_minor, program)
    # The choice's message is the key: a second tap, on this button or another of the same message, is a replay.
    key = f"refund:{query.message.chat.id}:{query.message.message_id}"
    receipt = purchase.external_id if purchase is not None else "?"
    text = await _refund(
        session,
        program,
        bot,
        i18n,
        callback_data.purchase_id,
        receipt,
        amount,
        key,
        query.from_user.id,
        role,
        clock(),
    )
    await query.answer()
    await edit_or_keep(query.message, text, None)


async def _refund(
    session: DbSession,
    program: Program,
    bot: Bot,
    i18n: I18n,
    purchase_id: int | None,
    receipt_text: str,
    amount: Decimal | None,
    key: str,
    actor: int,
    role: Role,
    now: datetime,
) -> str:
    receipt, locale = html.escape(receipt_text), i18n.current_locale
    try:
        if purchase_id is None:
            raise RefundRefused(RefundProblem.UNKNOWN)
        result = await refund(
            session,
            program,
            purchase_id=purchase_id,
            amount=amount,
            actor_id=actor,
            key=key,
            now=now,
            store=await stores.of_staff(session, program, actor),
            actor_role=role,
        )
    except OwnAccount:
        return own_account_refused()
    except RefundRefused as refused:
        if refused.problem is RefundProblem.UNKNOWN:
            return _("No purchase with receipt {receipt}.").format(receipt=receipt)
        if refused.problem is RefundProblem.NOTHING_LEFT:
            return _("Receipt {receipt} is already fully refunded. Nothing was changed.").format(receipt=receipt)
        if refused.problem is RefundProblem.CONFLICT:
            return _("This refund was already made. Nothing was changed.")
        if refused.problem is RefundProblem.OTHER_STORE:
            return other_store_refused(program, refused.store, locale.replace("_", "-"))
        return _("Only {amount} of receipt {receipt} can still be refunded. Nothing was changed.").format(
            amount=money(from_minor(refused.refundable_minor, program), program.currency, locale), receipt=receipt
        )
    if not result.created:
        return _("This refund was already made. Nothing was changed.")
    if result.member is not None:
        await notify_refund(
            bot,
            i18n,
            result.member,
            result.refund.amount_minor,
            result.refund.points,
            result.balance,
            program,
        )
    refunded = money(from_minor(result.refund.amount_minor, program), program.currency, locale)
    return ngettext(
        "↩️ Refunded {amount} of receipt {receipt}: −{points} point, the member's balance is {balance}.",
        "↩️ Refunded {amount} of receipt {receipt}: −{points} points, the member's balance is {balance}.",
        result.refund.points,
    ).format(amount=refunded, receipt=receipt, points=result.refund.points, balance=result.balance)


def router() -> Router:
    router = Router(name="refund")
    router.message.register(refund_purchase, slash("refund"), HasPermission(Permission.RECORD_PURCHASE))
    router.callback_query.register(pick_purchase, RefundPick.filter(), HasPermission(Permission.RECORD_PURCHASE))
    return router
