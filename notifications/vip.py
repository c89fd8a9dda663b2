"""The scheduler's VIP messages (the monthly gift, the reminder a few days before VIP ends, the end of a subscription
that did not renew) and the two Telegram calls of a subscription the chat and the Mini App share: its invoice link,
turning its renewal off or on, and off after a staff refund."""

from __future__ import annotations

import html
import logging
from datetime import datetime

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import LabeledPrice
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from loyalty import vip
from loyalty.members import MemberView
from loyalty.program import Program, VipRules
from notifications.delivery import Letter, Notice, Outcome, send_once
from notifications.texts import coupon_line, day, locale_of
from storage.database import SessionFactory

log = logging.getLogger(__name__)


async def send_vip_gifts(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    """The monthly VIP gift: claimed, given (idempotently by its ledger and coupon key), then told."""
    sent = 0
    async with sessions() as session:
        for due in await vip.due_gifts(session, program, now):
            member = due.member

            async def render(claimed: bool, due: vip.DueGift = due) -> Letter | None:
                gift = await vip.give(session, program, due, now)
                if due.member.blocked_at is not None:
                    return None  # paid for, so given; but the member cannot be told
                text = _("👑 Your VIP gift from {program} is here!").format(program=html.escape(program.name))
                if gift.points:
                    text += "\n" + ngettext(
                        "Here is {points} bonus point for you.", "Here are {points} bonus points for you.", gift.points
                    ).format(points=gift.points)
                return Letter(text + await coupon_line(session, gift.coupon, due.member, program))

            claim = Notice(vip.GIFT_KIND, member.telegram_id, due.stretch, seq=due.number)
            outcome = await send_once(
                bot, session, i18n, claim, chat_id=member.chat_id, language=member.language, now=now, render=render
            )
            sent += outcome is Outcome.SENT
    return sent


async def send_vip_reminders(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    """A few days before VIP ends: once per end date."""
    sent = 0
    async with sessions() as session:
        for due in await vip.due_reminders(session, program, now):
            member = due.member

            async def render(claimed: bool, due: vip.DueReminder = due) -> Letter:
                text = _("👑 Your VIP membership ends on {date}.").format(
                    date=day(due.ends, program.tz, locale_of(due.member.language))
                )
                rules = program.vip_offer
                if rules is not None:
                    text += " " + ngettext(
                        "Renew with /vip to keep your benefits: paying now adds {days} day.",
                        "Renew with /vip to keep your benefits: paying now adds {days} days.",
                        rules.period_days,
                    ).format(days=rules.period_days)
                return Letter(text)

            claim = Notice(vip.REMINDER_KIND, member.telegram_id, due.period)
            outcome = await send_once(
                bot, session, i18n, claim, chat_id=member.chat_id, language=member.language, now=now, render=render
            )
            sent += outcome is Outcome.SENT
    return sent


async def send_vip_lapses(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    """A subscribed VIP ended without a renewal: the member is told once, with how to subscribe again."""
    sent = 0
    async with sessions() as session:
        for due in await vip.due_lapses(session, now):
            member = due.member

            async def render(claimed: bool, due: vip.DueLapse = due) -> Letter:
                if due.canceled:
                    text = _("👑 Your VIP membership ended: its renewal was cancelled.")
                else:
                    text = _("👑 Your VIP membership ended: Telegram did not renew your subscription.")
                if program.vip_offer is not None:
                    text += " " + _("Subscribe again with /vip whenever you like.")
                return Letter(text)

            claim = Notice(vip.LAPSE_KIND, member.telegram_id, due.period)
            outcome = await send_once(
                bot, session, i18n, claim, chat_id=member.chat_id, language=member.language, now=now, render=render
            )
            sent += outcome is Outcome.SENT
    return sent


# ------------------------------------------------------------------------------------------------ subscriptions


def prices(rules: VipRules) -> list[LabeledPrice]:
    """What a VIP invoice charges, one-off or by subscription, as the member reads it on the invoice."""
    label = ngettext("VIP, {days} day", "VIP, {days} days", rules.period_days).format(days=rules.period_days)
    return [LabeledPrice(label=label, amount=rules.price_stars)]


async def invoice_link(bot: Bot, rules: VipRules, member: MemberView) -> str:
    """An invoice link for this member (the Mini App opens it; /vip sends it with a subscription): with
    ``renew = "subscription"`` a Stars subscription, which Telegram charges again every 30 days."""
    subscribe = rules.renew == "subscription"
    return await bot.create_invoice_link(
        title=rules.title_in(member.language),
        description=rules.benefits_in(member.language),
        payload=vip.payload_for(member.id, rules),
        currency=vip.CURRENCY,
        prices=prices(rules),
        subscription_period=int(vip.SUBSCRIPTION_PERIOD.total_seconds()) if subscribe else None,
    )


async def change_renewal(
    bot: Bot, sessions: SessionFactory, member: MemberView, *, renew: bool, now: datetime
) -> vip.Status:
    """Turn the member's subscription renewal off (``renew=False``) or on again: checked, asked of Telegram, then
    stored once. Raises vip.RenewalRefused (nothing to change) or TelegramAPIError (Telegram said no)."""
    async with sessions() as session:
        subscription = await vip.renewal_change(session, member.id, renew=renew, now=now)
    assert subscription.id is not None
    await bot.edit_user_star_subscription(
        user_id=member.telegram_id, telegram_payment_charge_id=subscription.charge_id, is_canceled=not renew
    )
    async with sessions() as session:
        if not await vip.record_renewal(session, subscription.id, renew=renew, now=now):
            raise vip.RenewalRefused(vip.RenewalProblem.ALREADY)  # the same press, processed at the same moment
        return await vip.status_of(session, member.id, now)


async def stop_renewal(bot: Bot, session: AsyncSession, member_id: int, telegram_id: int, now: datetime) -> bool:
    """After a staff refund or an erasure: a subscription that would renew is cancelled with Telegram, so the member
    is not charged again. Whether one was; Telegram refusing is logged (the refund or erasure stands)."""
    subscription = (await vip.status_of(session, member_id, now)).subscription
    if subscription is None or subscription.id is None or subscription.canceled_at is not None:
        return False
    try:
        await bot.edit_user_star_subscription(
            user_id=telegram_id, telegram_payment_charge_id=subscription.charge_id, is_canceled=True
        )
    except TelegramAPIError:
        log.warning("could not cancel the VIP subscription of member %s", member_id, exc_info=True)
        return False
    return await vip.record_renewal(session, subscription.id, renew=False, now=now)
