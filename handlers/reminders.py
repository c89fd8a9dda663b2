"""Scheduled messages: birthday offers, win-back nudges, expiry warnings, tier reviews, the weekly digest.

Each ``send_*`` function is one scheduler job: it takes the time, selects what is due (``loyalty``), claims each
message before sending, and releases the claim if Telegram failed in a way worth retrying. They return how many
messages went out.
"""

from __future__ import annotations

import html
from datetime import datetime

from aiogram import Bot
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.settings import Settings
from handlers.delivery import Outcome, deliver
from handlers.ui import coupon_line, day, locale_of, money, speaking
from loyalty import birthdays, digest, expiry, winback
from loyalty.ledger import expire_due
from loyalty.members import members_of, reachable
from loyalty.notices import claim, release
from loyalty.program import Program
from loyalty.purchases import from_minor
from loyalty.roles import Role, StaticRoles, highest, staff_in_database
from loyalty.tiers import review_tiers
from storage.database import SessionFactory


async def send_birthday_offers(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    year = str(birthdays.local_today(program, now)[0].year)
    sent = 0
    async with sessions() as session:
        for member in await members_of(session, birthdays.due(program, now)):
            if not await claim(session, birthdays.KIND, member.telegram_id, year, now):
                continue  # another scheduler greets this one
            gift = await birthdays.give(session, program, member, int(year), now)
            with speaking(i18n, member.language):
                text = _("🎂 Happy birthday, {name}! {program} wishes you a wonderful day.").format(
                    name=html.escape(member.first_name or ""), program=html.escape(program.name)
                )
                if gift.points:
                    text += "\n" + _("Here are {points} bonus points for you.").format(points=gift.points)
                text += await coupon_line(session, gift.coupon, member, program)
            outcome = await deliver(bot, session, member.chat_id, text, now)
            if outcome is Outcome.RETRY:
                await release(session, birthdays.KIND, member.telegram_id, year)
            sent += outcome is Outcome.SENT
    return sent


async def send_winback_nudges(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    sent = 0
    async with sessions() as session:
        for member in await members_of(session, winback.due(now)):
            nudge = await winback.prepare(session, program, member, now)
            if nudge is None:
                continue
            if not await claim(session, winback.KIND, member.telegram_id, nudge.lapse, now, seq=nudge.number):
                await winback.advance(session, program, nudge, now)  # sent before (by us or another scheduler)
                continue
            with speaking(i18n, member.language):
                locale = locale_of(member.language)
                text = _("👋 We miss you at {program}, {name}!").format(
                    program=html.escape(program.name), name=html.escape(member.first_name or "")
                )
                if nudge.bonus and nudge.bonus_until is not None:
                    text += "\n" + _("Come by before {date} and get {points} extra points with your purchase.").format(
                        date=day(nudge.bonus_until, program.tz, locale), points=nudge.bonus
                    )
                text += await coupon_line(session, nudge.coupon, member, program)
                text += "\n" + _("No more offers like this? Turn promotions off in /settings.")
            outcome = await deliver(bot, session, member.chat_id, text, now)
            if outcome is Outcome.RETRY:
                await release(session, winback.KIND, member.telegram_id, nudge.lapse, seq=nudge.number)
                continue
            await winback.advance(session, program, nudge, now)
            sent += outcome is Outcome.SENT
    return sent


async def expire_points(sessions: SessionFactory, now: datetime) -> int:
    async with sessions() as session:
        return await expire_due(session, now)


async def send_expiry_warnings(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    sent = 0
    async with sessions() as session:
        for member in await members_of(session, expiry.due(program, now)):
            warning = await expiry.claim_warning(session, program, member, now)
            if warning is None:
                continue
            with speaking(i18n, member.language):
                text = _("⏳ {points} of your points expire on {date}. Treat yourself before then: /rewards").format(
                    points=warning.points, date=day(warning.first, program.tz, locale_of(member.language))
                )
            outcome = await deliver(bot, session, member.chat_id, text, now)
            if outcome is Outcome.RETRY:
                await expiry.unclaim(session, member, warning)
            sent += outcome is Outcome.SENT
    return sent


async def review_member_tiers(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    """The periodic tier review; warnings and demotions are told to the member."""
    if not program.tiers.levels:
        return 0
    sent = 0
    async with sessions() as session:
        review = await review_tiers(session, program, now)
        for member_id, level, short, deadline in review.warned:
            member = await reachable(session, member_id)
            if member is None:
                continue
            with speaking(i18n, member.language):
                locale = locale_of(member.language)
                amount = money(short, program.currency, locale) if program.tiers.basis == "spend" else str(short)
                text = _("🏅 To keep your {tier} status, earn {amount} more in qualifying purchases by {date}.").format(
                    tier=html.escape(level.name_in(member.language)),
                    amount=amount,
                    date=day(deadline, program.tz, locale),
                )
            sent += await deliver(bot, session, member.chat_id, text, now) is Outcome.SENT
        for member_id, old, new in review.demoted:
            member = await reachable(session, member_id)
            if member is None:
                continue
            with speaking(i18n, member.language):
                text = _(
                    "Your status changed from {old} to {new}. Every purchase counts towards climbing back!"
                ).format(
                    old=html.escape(old.name_in(member.language)),
                    new=html.escape(new.name_in(member.language)) if new else _("member"),
                )
            sent += await deliver(bot, session, member.chat_id, text, now) is Outcome.SENT
    return sent


async def send_weekly_digest(
    bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, settings: Settings, now: datetime
) -> int:
    week = digest.due_week(program, now)
    if week is None:
        return 0
    name, moment = week
    sent = 0
    async with sessions() as session:
        static, granted = StaticRoles(admins=settings.admin_ids).staff_ids(), await staff_in_database(session)
        # Someone may hold a role in settings and another in the database: the higher one counts.
        roles = {
            tid: highest({static.get(tid, Role.MEMBER), granted.get(tid, Role.MEMBER)})
            for tid in static.keys() | granted.keys()
        }
        recipients = sorted(tid for tid, role in roles.items() if role in (Role.OWNER, Role.ADMIN))
        facts = None
        for telegram_id in recipients:
            if not await claim(session, digest.KIND, telegram_id, name, now):
                continue
            facts = facts or await digest.summary(session, moment)
            with speaking(i18n, program.staff_language):
                locale = locale_of(program.staff_language)
                score = "—" if facts.nps.score is None else f"{facts.nps.score:.0f}"
                text = "\n".join(
                    [
                        _("📊 <b>{program}</b>, the week to {date}").format(
                            program=html.escape(program.name), date=day(facts.until, program.tz, locale)
                        ),
                        _("New members: {count}").format(count=facts.new_members),
                        _("Purchases: {count} ({amount})").format(
                            count=facts.purchases,
                            amount=money(from_minor(facts.sales_minor, program), program.currency, locale),
                        ),
                        _("Points earned: {earned} · redeemed: {redeemed}").format(
                            earned=facts.points_earned, redeemed=facts.points_redeemed
                        ),
                        _("NPS: {score} ({answers} answers)").format(score=score, answers=facts.nps.answers),
                        _("Open support threads: {count}").format(count=facts.open_threads),
                    ]
                )
            outcome = await deliver(bot, session, telegram_id, text, now)
            if outcome is Outcome.RETRY:
                await release(session, digest.KIND, telegram_id, name)
            sent += outcome is Outcome.SENT
    return sent
