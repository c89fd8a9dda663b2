"""Paid VIP with Telegram Stars: /vip and its invoice (or, with ``[vip] renew = "subscription"``, its subscription
link and the Cancel renewal / Renew again buttons), the pre-checkout answer, the payment and a subscription's
renewals, /paysupport, staff refunds (/vip_refund). The monthly gifts, ending reminders and lapsed subscriptions
are in ``notifications.vip``."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    PreCheckoutQuery,
)
from aiogram.utils.i18n import I18n, get_i18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasContent, HasPermission, IsMember, slash
from loyalty import vip
from loyalty.members import MemberView, find_member
from loyalty.program import Program, VipRules
from loyalty.roles import Permission
from notifications import vip as vip_telegram
from notifications.texts import day, tell
from storage.database import DbSession, SessionFactory
from storage.models import VipPayment

log = logging.getLogger(__name__)


def _until(moment: datetime, program: Program) -> str:
    """A date in the program's timezone, in the language being spoken."""
    return day(moment, program.tz, get_i18n().current_locale)


def _language() -> str:
    return get_i18n().current_locale.replace("_", "-")


# ------------------------------------------------------------------------------------------------ /vip


def _offer_text(rules: VipRules, language: str, vip_until: datetime | None, program: Program, now: datetime) -> str:
    lines = [
        f"👑 <b>{html.escape(rules.title_in(language))}</b>",
        html.escape(rules.benefits_in(language)),
        "",
        # Two counts, each with its own noun: each part takes its own plural form.
        _("Price: {price} for {days}.").format(
            price=ngettext("⭐ {price} Star", "⭐ {price} Stars", rules.price_stars).format(price=rules.price_stars),
            days=ngettext("{days} day", "{days} days", rules.period_days).format(days=rules.period_days),
        ),
    ]
    if rules.renew == "subscription":
        lines.append(_("It renews by itself every 30 days until you cancel it here in /vip."))
    elif vip.is_vip(vip_until, now) and vip_until is not None:
        lines.append(
            ngettext(
                "You are VIP until {date}. Paying now adds {days} day to that.",
                "You are VIP until {date}. Paying now adds {days} days to that.",
                rules.period_days,
            ).format(date=_until(vip_until, program), days=rules.period_days)
        )
    lines += [
        "",
        _("<b>Terms</b>"),
        html.escape(rules.terms_in(language)),
        _("By paying you accept these terms. Questions about payments: /paysupport"),
    ]
    return "\n".join(lines)


async def show_vip(
    message: Message, session: DbSession, member: MemberView, program: Program, clock: Callable[[], datetime]
) -> None:
    rules = program.vip_offer
    vip_until = await vip.vip_until_of(session, member.id)
    now = clock()
    if rules is None:
        text = _("VIP membership is not offered at the moment.")
        if vip.is_vip(vip_until, now) and vip_until is not None:
            text += "\n" + _("Your VIP runs until {date}.").format(date=_until(vip_until, program))
        await message.answer(text)
        return
    # The terms come first, in their own message, so they are on screen before the Pay button is.
    await message.answer(_offer_text(rules, member.language, vip_until, program, now))
    if rules.renew == "subscription":
        status = await vip.status_of(session, member.id, now)
        text, markup = await _subscription(message.bot, rules, member, status, program, now)
        await message.answer(text, reply_markup=markup)
        return
    pay = InlineKeyboardButton(text=_("Pay ⭐{price}").format(price=rules.price_stars), pay=True)
    await message.answer_invoice(
        title=rules.title_in(member.language),
        description=rules.benefits_in(member.language),
        payload=vip.payload_for(member.id, rules),
        currency=vip.CURRENCY,
        prices=vip_telegram.prices(rules),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[[pay]]),
    )


# ------------------------------------------------------------------------------------------------ subscription


class VipRenewal(CallbackData, prefix="viprenew"):
    renew: bool  # False: Cancel renewal; True: Renew again


async def _subscription(
    bot: Bot | None, rules: VipRules, member: MemberView, status: vip.Status, program: Program, now: datetime
) -> tuple[str, InlineKeyboardMarkup]:
    """The subscription's state and its one button: Subscribe (a link), Cancel renewal, or Renew again."""
    subscription = status.subscription
    if subscription is not None and status.renews:
        text = _("🔁 Your VIP subscription renews on {date} for ⭐{price}.").format(
            date=_until(subscription.expires_at, program), price=rules.price_stars
        )
        button = InlineKeyboardButton(text=_("Cancel renewal"), callback_data=VipRenewal(renew=False).pack())
    elif subscription is not None:
        text = _("Your VIP subscription ends on {date} and will not renew.").format(
            date=_until(subscription.expires_at, program)
        )
        button = InlineKeyboardButton(text=_("Renew again"), callback_data=VipRenewal(renew=True).pack())
    else:
        assert bot is not None
        link = await vip_telegram.invoice_link(bot, rules, member)
        text = _("Subscribe to pay ⭐{price} now and again every 30 days; cancel any time here.").format(
            price=rules.price_stars
        )
        if status.vip(now) and status.vip_until is not None:
            text += "\n" + _("Your VIP runs until {date}; the subscription adds its 30 days to that.").format(
                date=_until(status.vip_until, program)
            )
        button = InlineKeyboardButton(text=_("Subscribe ⭐{price}").format(price=rules.price_stars), url=link)
    return text, InlineKeyboardMarkup(inline_keyboard=[[button]])


async def change_renewal(
    query: CallbackQuery,
    callback_data: VipRenewal,
    sessions: SessionFactory,
    program: Program,
    clock: Callable[[], datetime],
    member: MemberView | None = None,
) -> None:
    """Cancel renewal / Renew again: Telegram is asked first, and the change stored once; a replayed press is
    answered and changes nothing."""
    if member is None:
        await query.answer(_("Please send /start to join first."), show_alert=True)
        return
    now, renew = clock(), callback_data.renew
    try:
        status = await vip_telegram.change_renewal(query.bot, sessions, member, renew=renew, now=now)  # type: ignore[arg-type]
    except vip.RenewalRefused as refused:
        if refused.problem is vip.RenewalProblem.NO_SUBSCRIPTION:
            text = _("You have no VIP subscription running. Nothing was changed.")
        elif renew:
            text = _("Your VIP subscription already renews. Nothing was changed.")
        else:
            text = _("Renewal is already cancelled. Nothing was changed.")
        await query.answer(text, show_alert=True)
        return
    except TelegramAPIError as error:
        await query.answer(
            _("Telegram refused the change: {reason}. Nothing was changed.").format(reason=error.message),
            show_alert=True,
        )
        return
    await query.answer(_("Renewal is on again.") if renew else _("Renewal cancelled."))
    rules = program.vip_offer
    if rules is not None and isinstance(query.message, Message):
        text, markup = await _subscription(query.bot, rules, member, status, program, now)
        await query.message.edit_text(text, reply_markup=markup)


# ------------------------------------------------------------------------------------------------ payment


async def pre_checkout(query: PreCheckoutQuery, session: DbSession, program: Program) -> None:
    """Telegram waits at most ten seconds for this answer, so it only reads."""
    problem = await vip.check_checkout(
        session,
        program,
        telegram_id=query.from_user.id,
        payload=query.invoice_payload,
        currency=query.currency,
        total_amount=query.total_amount,
    )
    if problem is None:
        await query.answer(ok=True)
        return
    if problem is vip.CheckoutProblem.NOT_OFFERED:
        reason = _("VIP membership is not offered any more. You were not charged.")
    elif problem is vip.CheckoutProblem.OFFER_CHANGED:
        reason = _(
            "The VIP offer has changed since this invoice. You were not charged: send /vip for the current offer."
        )
    else:
        reason = _("This invoice is not for your membership. You were not charged: send /start to join, then /vip.")
    await query.answer(ok=False, error_message=reason)


async def successful_payment(
    message: Message, session: DbSession, program: Program, clock: Callable[[], datetime]
) -> None:
    payment = message.successful_payment
    assert payment is not None and message.from_user is not None
    try:
        result = await vip.record_payment(
            session,
            program,
            telegram_id=message.from_user.id,
            charge_id=payment.telegram_payment_charge_id,
            payload=payment.invoice_payload,
            currency=payment.currency,
            amount=payment.total_amount,
            now=clock(),
            recurring=bool(payment.is_recurring),
            first_recurring=bool(payment.is_first_recurring),
            expires_at=(
                datetime.fromtimestamp(payment.subscription_expiration_date, UTC)
                if payment.subscription_expiration_date
                else None
            ),
        )
    except LookupError:
        log.error(
            "Stars payment %s from %s without a membership", payment.telegram_payment_charge_id, message.from_user.id
        )
        await message.answer(
            _(
                "We received your payment but found no membership for it. Please send /paysupport "
                "and quote this charge id: <code>{charge}</code>"
            ).format(charge=html.escape(payment.telegram_payment_charge_id))
        )
        return
    date = _until(result.vip_until, program)
    if not result.created:
        # Telegram delivered the payment again: it was counted once; say where things stand.
        await message.answer(_("This payment is already recorded. Your VIP runs until {date}.").format(date=date))
    elif result.renewal:
        await message.answer(_("🔁 Your VIP subscription renewed: VIP runs until {date}.").format(date=date))
    elif payment.is_first_recurring or payment.is_recurring:
        await message.answer(
            _(
                "👑 Welcome to VIP! Your benefits run until {date}, and your subscription renews them every "
                "30 days. Cancel any time in /vip."
            ).format(date=date)
        )
    elif result.extended:
        await message.answer(_("👑 Thank you! Your VIP is extended until {date}.").format(date=date))
    else:
        await message.answer(_("👑 Welcome to VIP! Your benefits start now and run until {date}.").format(date=date))


async def refunded_payment(
    message: Message, session: DbSession, program: Program, clock: Callable[[], datetime]
) -> None:
    """Telegram tells of a refund made outside /vip_refund (or confirms one made with it): recorded once."""
    refund = message.refunded_payment
    assert refund is not None
    result = await vip.mark_refunded(session, refund.telegram_payment_charge_id, actor_id=None, now=clock())
    if result is None or not result.changed:
        return
    await message.answer(_refund_notice(result.payment, result.vip_until, program, clock()))


def _refund_notice(payment: VipPayment, vip_until: datetime | None, program: Program, now: datetime) -> str:
    text = _("↩️ Your payment of ⭐{amount} was refunded.").format(amount=payment.amount)
    if vip.is_vip(vip_until, now) and vip_until is not None:
        return text + " " + _("Your VIP now runs until {date}.").format(date=_until(vip_until, program))
    return text + " " + _("Your VIP membership has ended.")


# ------------------------------------------------------------------------------------------------ /paysupport


async def pay_support(message: Message, session: DbSession, member: MemberView | None, program: Program) -> None:
    lines = [
        _("💳 <b>Payment support</b>"),
        _(
            "Questions about a VIP payment or a refund? Write to us with /feedback and quote the charge id of "
            "the payment. Telegram's support cannot help with payments made in this bot."
        ),
    ]
    if member is not None:
        payments = await vip.payments_of(session, member.id)
        if payments:
            lines += ["", _("Your latest payments:")]
        for payment in payments:
            line = _("{date}: ⭐{amount}, charge id <code>{charge}</code>").format(
                date=_until(payment.paid_at, program),
                amount=payment.amount,
                charge=html.escape(payment.telegram_payment_charge_id),
            )
            if payment.refunded_at is not None:
                line += " " + _("(refunded)")
            lines.append("• " + line)
    rules = program.vip_offer
    if rules is not None:
        lines += ["", _("<b>Terms</b>"), html.escape(rules.terms_in(member.language if member else _language()))]
    await message.answer("\n".join(lines))


# ------------------------------------------------------------------------------------------------ /vip_refund


def _refund_usage() -> str:
    return _("Usage: {usage}").format(usage=html.escape(_("/vip_refund <member> <charge id>")))


async def refund_vip(
    message: Message,
    command: CommandObject,
    session: DbSession,
    bot: Bot,
    i18n: I18n,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    args = (command.args or "").split()
    if len(args) != 2 or not vip.CHARGE_ID.match(args[1]):
        await message.answer(_refund_usage())
        return
    ref, charge = args
    member = await find_member(session, ref)
    if member is None or member.id is None:
        await message.answer(_("No member found for {ref}.").format(ref=html.escape(ref)))
        return
    try:
        payment = await vip.refundable(session, member.id, charge)
    except vip.RefundRefused as refused:
        if refused.problem is vip.RefundProblem.UNKNOWN:
            text = _("No VIP payment with charge id {charge}. Nothing was changed.")
        elif refused.problem is vip.RefundProblem.OTHER_MEMBER:
            text = _("Charge {charge} is another member's payment. Nothing was changed.")
        else:
            text = _("Charge {charge} was already refunded. Nothing was changed.")
        await message.answer(text.format(charge=html.escape(charge)))
        return
    try:
        await bot.refund_star_payment(user_id=member.telegram_id, telegram_payment_charge_id=charge)
    except TelegramBadRequest as error:
        # Refunded already (by another admin a moment ago, or outside the bot): record it below all the same.
        if "CHARGE_ALREADY_REFUNDED" not in error.message:
            await message.answer(
                _("Telegram refused the refund: {reason}. Nothing was changed.").format(
                    reason=html.escape(error.message)
                )
            )
            return
    except TelegramAPIError as error:
        await message.answer(
            _("Telegram refused the refund: {reason}. Nothing was changed.").format(reason=html.escape(error.message))
        )
        return
    actor = message.from_user.id if message.from_user else None
    now = clock()
    result = await vip.mark_refunded(session, charge, actor_id=actor, now=now)
    if result is None or not result.changed:
        await message.answer(
            _("Charge {charge} was already refunded. Nothing was changed.").format(charge=html.escape(charge))
        )
        return
    name = html.escape(member.first_name or member.code)
    if vip.is_vip(result.vip_until, now) and result.vip_until is not None:
        status = _("Their VIP now runs until {date}.").format(date=_until(result.vip_until, program))
    else:
        status = _("Their VIP has ended.")
    if await vip_telegram.stop_renewal(bot, session, member.id, member.telegram_id, now):
        status += " " + _("Their subscription will not renew.")
    await message.answer(
        _("↩️ Refunded ⭐{amount} to {name} (<code>{code}</code>).").format(
            amount=payment.amount, name=name, code=member.code
        )
        + " "
        + status
    )
    await tell(bot, i18n, member, lambda: _refund_notice(payment, result.vip_until, program, now))


def router() -> Router:
    router = Router(name="vip")
    router.message.register(show_vip, slash("vip"), IsMember())
    router.message.register(pay_support, slash("paysupport"))
    router.message.register(refund_vip, slash("vip_refund"), HasPermission(Permission.REFUND_PAYMENTS))
    router.message.register(successful_payment, HasContent("successful_payment"))
    router.message.register(refunded_payment, HasContent("refunded_payment"))
    router.pre_checkout_query.register(pre_checkout)
    router.callback_query.register(change_renewal, VipRenewal.filter())
    return router
