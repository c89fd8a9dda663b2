"""The scheduler's VIP messages: the monthly gift and the reminder a few days before VIP ends."""

from __future__ import annotations

import html
from datetime import datetime

from aiogram import Bot
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from loyalty import vip
from loyalty.program import Program
from notifications.delivery import Letter, Notice, Outcome, send_once
from notifications.texts import coupon_line, day, locale_of
from storage.database import SessionFactory


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
