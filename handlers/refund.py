"""/refund: a cashier reverses a purchase by its receipt, fully or partly."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission
from handlers.purchase import amount_problem
from loyalty.program import Program
from loyalty.purchases import RECEIPT_RE, AmountError, from_minor, parse_amount
from loyalty.refunds import RefundProblem, RefundRefused, refund
from loyalty.roles import Permission
from notifications.texts import money
from storage.database import DbSession


async def refund_purchase(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    args = (command.args or "").split()
    if not 1 <= len(args) <= 2 or not RECEIPT_RE.match(args[0]):
        await message.answer(_("Usage: {usage}").format(usage=html.escape(_("/refund <receipt> [amount]"))))
        return
    locale = i18n.current_locale
    amount = None
    if len(args) == 2:
        try:
            amount = parse_amount(args[1], program)
        except AmountError as error:
            await message.answer(amount_problem(error, program, locale))
            return
    try:
        result = await refund(
            session,
            program,
            receipt=args[0],
            amount=amount,
            actor_id=message.from_user.id if message.from_user else 0,
            key=f"refund:{message.chat.id}:{message.message_id}",
            now=clock(),
        )
    except RefundRefused as refused:
        receipt = html.escape(args[0])
        if refused.problem is RefundProblem.UNKNOWN:
            text = _("No purchase with receipt {receipt}.").format(receipt=receipt)
        elif refused.problem is RefundProblem.NOTHING_LEFT:
            text = _("Receipt {receipt} is already fully refunded. Nothing was changed.").format(receipt=receipt)
        else:
            text = _("Only {amount} of receipt {receipt} can still be refunded. Nothing was changed.").format(
                amount=money(from_minor(refused.refundable_minor, program), program.currency, locale), receipt=receipt
            )
        await message.answer(text)
        return
    refunded = money(from_minor(result.refund.amount_minor, program), program.currency, locale)
    if not result.created:
        await message.answer(_("This refund was already made. Nothing was changed."))
        return
    text = ngettext(
        "↩️ Refunded {amount} of receipt {receipt}: −{points} point, the member's balance is {balance}.",
        "↩️ Refunded {amount} of receipt {receipt}: −{points} points, the member's balance is {balance}.",
        result.refund.points,
    ).format(amount=refunded, receipt=html.escape(args[0]), points=result.refund.points, balance=result.balance)
    await message.answer(text)


def router() -> Router:
    router = Router(name="refund")
    router.message.register(refund_purchase, Command("refund"), HasPermission(Permission.RECORD_PURCHASE))
    return router
