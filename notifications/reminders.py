"""Scheduled messages: birthday offers, win-back nudges, expiry warnings, tier reviews, the weekly digest.

Each ``send_*`` function is one scheduler job: it takes the time, selects what is due (``loyalty``) and sends each
message once (``delivery.send_once``). They return how many messages went out.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

from aiogram import Bot
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from loyalty import birthdays, checkin, digest, expiry, winback
from loyalty.members import members_of, reachable
from loyalty.program import Program
from loyalty.purchases import from_minor
from loyalty.roles import Role, StaticRoles, staff_roles
from loyalty.tiers import review_tiers
from notifications.delivery import Letter, Notice, Outcome, deliver, send_once
from notifications.engagement import reminder_text
from notifications.texts import coupon_line, day, locale_of, money, speaking
from storage.database import DbSession, SessionFactory
from storage.models import Member


async def send_birthday_offers(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    year = str(birthdays.local_today(program, now)[0].year)
    sent = 0
    async with sessions() as session:
        for member in await members_of(session, birthdays.due(program, now)):
            if await birthdays.hold_out(session, program, member, int(year), now):
                continue  # the holdout: nothing sent, nothing given, nothing said

            async def render(claimed: bool, member: Member = member) -> Letter:
                gift = await birthdays.give(session, program, member, int(year), now)
                text = _("🎂 Happy birthday, {name}! {program} wishes you a wonderful day.").format(
                    name=html.escape(member.first_name or ""), program=html.escape(program.name)
                )
                if gift.points:
                    text += "\n" + ngettext(
                        "Here is {points} bonus point for you.", "Here are {points} bonus points for you.", gift.points
                    ).format(points=gift.points)
                return Letter(text + await coupon_line(session, gift.coupon, member, program))

            claim = Notice(birthdays.KIND, member.telegram_id, year)
            outcome = await send_once(
                bot, session, i18n, claim, chat_id=member.chat_id, language=member.language, now=now, render=render
            )
            sent += outcome is Outcome.SENT
    return sent


async def send_winback_nudges(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    sent = 0
    async with sessions() as session:
        for member in await members_of(session, winback.due(now)):
            nudge = await winback.prepare(session, program, member, now)
            if nudge is None:
                continue

            async def render(claimed: bool, member: Member = member, nudge: winback.Nudge = nudge) -> Letter:
                text = _("👋 We miss you at {program}, {name}!").format(
                    program=html.escape(program.name), name=html.escape(member.first_name or "")
                )
                if nudge.bonus and nudge.bonus_until is not None:
                    text += "\n" + ngettext(
                        "Come by before {date} and get {points} extra point with your purchase.",
                        "Come by before {date} and get {points} extra points with your purchase.",
                        nudge.bonus,
                    ).format(date=day(nudge.bonus_until, program.tz, locale_of(member.language)), points=nudge.bonus)
                text += await coupon_line(session, nudge.coupon, member, program)
                return Letter(text + "\n" + _("No more offers like this? Turn promotions off in /settings."))

            claim = Notice(winback.KIND, member.telegram_id, nudge.lapse, seq=nudge.number)
            outcome = await send_once(
                bot, session, i18n, claim, chat_id=member.chat_id, language=member.language, now=now, render=render
            )
            if outcome is Outcome.RETRY:
                continue
            # Sent now, or before (by us or another scheduler): the next nudge of the lapse is due next.
            await winback.advance(session, program, nudge, now)
            sent += outcome is Outcome.SENT
    return sent


async def send_checkin_reminders(
    bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime
) -> int:
    """The opt-in evening reminder to check in: from ``[checkin] reminder_hour``, once per member and local day,
    only to members who opted in, take promotions and can be messaged, and have not checked in yet."""
    today = checkin.local_day(program, now).isoformat()
    sent = 0
    async with sessions() as session:
        for member in await members_of(session, checkin.reminders_due(program, now)):

            async def render(claimed: bool, member: Member = member) -> Letter:
                status = await checkin.status(session, program, member.id or 0, now)
                return Letter(reminder_text(status, program, member.language))

            claim = Notice(checkin.KIND, member.telegram_id, today)
            outcome = await send_once(
                bot, session, i18n, claim, chat_id=member.chat_id, language=member.language, now=now, render=render
            )
            sent += outcome is Outcome.SENT
    return sent


@dataclass(frozen=True)
class _ExpiringLots:
    """The claim on an expiry warning: the member's unwarned lots, all claimed at once."""

    program: Program
    member: Member

    async def take(self, session: DbSession, now: datetime) -> expiry.Warning | None:
        return await expiry.claim_warning(session, self.program, self.member, now)

    async def give_back(self, session: DbSession, taken: expiry.Warning) -> None:
        await expiry.unclaim(session, self.member, taken)


async def send_expiry_warnings(bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, now: datetime) -> int:
    sent = 0
    async with sessions() as session:
        for member in await members_of(session, expiry.due(program, now)):

            async def render(warning: expiry.Warning, member: Member = member) -> Letter:
                return Letter(
                    ngettext(
                        "⏳ {points} of your points expires on {date}. Treat yourself before then: /rewards",
                        "⏳ {points} of your points expire on {date}. Treat yourself before then: /rewards",
                        warning.points,
                    ).format(points=warning.points, date=day(warning.first, program.tz, locale_of(member.language)))
                )

            claim = _ExpiringLots(program, member)
            outcome = await send_once(
                bot, session, i18n, claim, chat_id=member.chat_id, language=member.language, now=now, render=render
            )
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
    bot: Bot, sessions: SessionFactory, program: Program, i18n: I18n, roles: StaticRoles, now: datetime
) -> int:
    week = digest.due_week(program, now)
    if week is None:
        return 0
    name, moment = week
    sent = 0
    async with sessions() as session:
        staff = await staff_roles(session, roles)
        recipients = sorted(tid for tid, role in staff.items() if role in (Role.OWNER, Role.ADMIN))
        facts: digest.Digest | None = None

        async def render(claimed: bool) -> Letter:
            nonlocal facts
            facts = facts or await digest.summary(session, moment)
            locale = locale_of(program.staff_language)
            score = "—" if facts.nps.score is None else f"{facts.nps.score:.0f}"
            lines = [
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
                ngettext(
                    "NPS: {score} ({answers} answer)", "NPS: {score} ({answers} answers)", facts.nps.answers
                ).format(score=score, answers=facts.nps.answers),
                _("Open support threads: {count}").format(count=facts.open_threads),
            ]
            return Letter("\n".join(lines))

        for telegram_id in recipients:
            claim = Notice(digest.KIND, telegram_id, name)
            outcome = await send_once(
                bot, session, i18n, claim, chat_id=telegram_id, language=program.staff_language, now=now, render=render
            )
            sent += outcome is Outcome.SENT
    return sent
