"""/refer: a member's invitation link and their referral stats; telling referrers; staff review of bursts."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlencode

from aiogram import Bot, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n, get_i18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, MenuButton, slash
from handlers.menu import INVITE
from handlers.staff import StaffChats, ask_staff, close_review, refuse_non_moderator
from loyalty import referrals
from loyalty.members import MemberView
from loyalty.numbers import RowId
from loyalty.program import Program
from loyalty.roles import Role
from notifications.purchases import after_payout, friend_name
from notifications.texts import money, tell
from storage.database import DbSession
from storage.models import Member


class ReferralReview(CallbackData, prefix="rr"):
    approve: bool
    referral_id: RowId


def link_for(bot_username: str, code: str) -> str:
    return f"https://t.me/{bot_username}?start={referrals.payload_for(code)}"


def _rules_text(program: Program) -> str:
    rules = program.referrals
    qualifying = money(rules.qualifying_amount, program.currency, _locale())
    lines = []
    if rules.friend_bonus:
        if rules.friend_bonus_on == "join":
            lines.append(
                ngettext(
                    "Your friend gets {points} point when they join.",
                    "Your friend gets {points} points when they join.",
                    rules.friend_bonus,
                ).format(points=rules.friend_bonus)
            )
        else:
            lines.append(
                ngettext(
                    "Your friend gets {points} point with their first purchase of {amount} or more.",
                    "Your friend gets {points} points with their first purchase of {amount} or more.",
                    rules.friend_bonus,
                ).format(points=rules.friend_bonus, amount=qualifying)
            )
    if rules.referrer_bonus:
        lines.append(
            ngettext(
                "You get {points} point when they make their first purchase of {amount} or more.",
                "You get {points} points when they make their first purchase of {amount} or more.",
                rules.referrer_bonus,
            ).format(points=rules.referrer_bonus, amount=qualifying)
        )
    return "\n".join(lines)


def _locale() -> str:
    return get_i18n().current_locale


async def refer(message: Message, session: DbSession, member: MemberView, program: Program, bot: Bot) -> None:
    me = await bot.me()
    link = link_for(me.username or "", member.code)
    stats = await referrals.stats(session, member.id)
    lines = [
        _("👥 <b>Invite friends to {program}</b>").format(program=html.escape(program.name)),
        "",
        _rules_text(program) if program.referrals.enabled else _("Share your link with friends."),
        "",
        _("Your personal link:"),
        f"<code>{html.escape(link)}</code>",
        "",
        _("Invited: {invited} · Joined: {joined} · Qualified: {qualified} · Points earned: {points}").format(
            invited=stats.invited, joined=stats.joined, qualified=stats.qualified, points=stats.points
        ),
    ]
    if program.referrals.enabled and program.referrals.monthly_cap:
        lines.append(
            ngettext(
                "Up to {cap} paid referral a month.",
                "Up to {cap} paid referrals a month.",
                program.referrals.monthly_cap,
            ).format(cap=program.referrals.monthly_cap)
        )
    invitation = _("Join me at {program} and get rewarded for every purchase!").format(program=program.name)
    share = "https://t.me/share/url?" + urlencode({"url": link, "text": invitation})
    markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=_("📤 Share"), url=share)]])
    await message.answer("\n".join(lines), reply_markup=markup)


async def after_join(
    bot: Bot, i18n: I18n, staff_chats: StaffChats, program: Program, linked: referrals.Linked, friend: Member
) -> None:
    """Tell the referrer their friend joined, or ask staff to review a join from a burst."""
    referral, referrer = linked.referral, linked.referrer
    if referral is None or referrer is None:
        return
    if linked.held:

        def markup() -> InlineKeyboardMarkup:
            return InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        InlineKeyboardButton(
                            text=_("✅ Approve"),
                            callback_data=ReferralReview(approve=True, referral_id=referral.id or 0).pack(),
                        ),
                        InlineKeyboardButton(
                            text=_("❌ Reject"),
                            callback_data=ReferralReview(approve=False, referral_id=referral.id or 0).pack(),
                        ),
                    ]
                ]
            )

        await ask_staff(
            bot,
            staff_chats,
            i18n,
            program,
            lambda: ngettext(
                "🚩 Referral held for review: more than {limit} friend joined through the link of {referrer} "
                "(<code>{code}</code>) within an hour. New member: {friend} (<code>{friend_code}</code>). "
                "Approve to pay the referral bonuses as usual, reject to pay none.",
                "🚩 Referral held for review: more than {limit} friends joined through the link of {referrer} "
                "(<code>{code}</code>) within an hour. New member: {friend} (<code>{friend_code}</code>). "
                "Approve to pay the referral bonuses as usual, reject to pay none.",
                program.referrals.burst_limit,
            ).format(
                limit=program.referrals.burst_limit,
                referrer=friend_name(referrer),
                code=referrer.code,
                friend=friend_name(friend),
                friend_code=friend.code,
            ),
            markup,
        )
        return
    if program.referrals.referrer_bonus:
        await tell(
            bot,
            i18n,
            referrer,
            lambda: ngettext(
                "👋 {friend} joined through your link! You will get {points} point when they make their first "
                "purchase of {amount} or more.",
                "👋 {friend} joined through your link! You will get {points} points when they make their first "
                "purchase of {amount} or more.",
                program.referrals.referrer_bonus,
            ).format(
                friend=friend_name(friend),
                points=program.referrals.referrer_bonus,
                amount=money(program.referrals.qualifying_amount, program.currency, _locale()),
            ),
        )
    else:
        await tell(
            bot, i18n, referrer, lambda: _("👋 {friend} joined through your link!").format(friend=friend_name(friend))
        )


async def review_referral(
    query: CallbackQuery,
    callback_data: ReferralReview,
    session: DbSession,
    program: Program,
    role: Role,
    i18n: I18n,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    if await refuse_non_moderator(query, role):
        return
    decision = await referrals.review(
        session,
        program,
        callback_data.referral_id,
        approve=callback_data.approve,
        actor_id=query.from_user.id,
        now=clock(),
    )
    if decision is None:
        await query.answer(_("This referral no longer exists."), show_alert=True)
        return
    if not decision.changed:
        await query.answer(
            _("Already decided: {decision}.").format(decision=_decision_name(decision.referral.review)), show_alert=True
        )
        return
    await query.answer(_decision_name(decision.referral.review))
    await close_review(query, i18n, program, lambda: _decision_name(decision.referral.review))
    if decision.payout is not None:
        await after_payout(bot, i18n, program, decision.payout)


def _decision_name(review: str | None) -> str:
    return _("✅ Approved") if review == referrals.Review.APPROVED else _("❌ Rejected")


def router() -> Router:
    router = Router(name="referral")
    router.message.filter(IsMember())
    router.message.register(refer, slash("refer"))
    router.message.register(refer, MenuButton(INVITE))
    return router


def review_router() -> Router:
    """Review buttons live in the staff chat, a group: outside the private-chat router."""
    router = Router(name="referral-review")
    router.callback_query.register(review_referral, ReferralReview.filter())
    return router
