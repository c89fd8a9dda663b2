"""What a purchase tells people on its own: the member what it earned, a referrer what it paid them; and what
the member is told when staff adjust their points or refund a purchase. Shared by the chat and the purchases API,
so both notify alike."""

from __future__ import annotations

import html

from aiogram import Bot
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from loyalty import referrals
from loyalty.campaigns import promotion_name
from loyalty.program import Program
from loyalty.purchases import PurchaseResult, from_minor
from notifications.engagement import completion_lines
from notifications.texts import card_lines, day, locale_of, money, tell
from storage.models import Member


async def announce_purchase(bot: Bot, i18n: I18n, member: Member, result: PurchaseResult, program: Program) -> bool:
    """After a new purchase: tell the member, and a referrer what the purchase paid them. Shared by /purchase and
    the purchases API so both notify alike. False if the member could not be told."""
    notified = await notify_purchase(bot, i18n, member, result, program)
    if result.referral is not None:
        await after_payout(bot, i18n, program, result.referral)
    return notified


def explanation(result: PurchaseResult, program: Program, language: str, *, escape: bool = True) -> str:
    """Why the purchase earned what it did, e.g. "64 points: 32 base ×2 Double Afternoons", with the promotion's
    (the file's or a campaign's) name in ``language``; ``escape``: for a Telegram HTML message (the Mini App shows
    it as plain text)."""
    purchase = result.purchase
    if not purchase.promotion:
        return ""
    return "\n" + ngettext(
        "{total} point: {base} base {detail} {promotion}",
        "{total} points: {base} base {detail} {promotion}",
        purchase.points,
    ).format(
        total=purchase.points,
        base=purchase.base_points,
        detail=purchase.promotion_detail or "",
        promotion=(html.escape if escape else str)(
            promotion_name(program, purchase.promotion, result.campaign, language)
        ),
    )


def pending_note(result: PurchaseResult, program: Program, locale: str, *, to_member: bool) -> str:
    """A new line saying the purchase's points wait for the return window, or "" if they are available now; for
    the member (the notice) or the cashier (their answer)."""
    purchase = result.purchase
    if not result.points or purchase.available_at is None or not purchase.pending_points:
        return ""
    date = day(purchase.available_at, program.tz, locale)
    if to_member:
        text: str = ngettext(
            "🕓 It is pending until {date}: yours to spend once the return window ends.",
            "🕓 They are pending until {date}: yours to spend once the return window ends.",
            result.points,
        )
    else:
        text = _("🕓 Pending until {date} (the return window).")
    return "\n" + text.format(date=date)


async def notify_purchase(bot: Bot, i18n: I18n, member: Member, result: PurchaseResult, program: Program) -> bool:
    """Tell the member what a purchase earned (from /purchase and the purchases API alike)."""
    locale = locale_of(member.language)

    def render() -> str:
        amount = money(from_minor(result.purchase.amount_minor, program), program.currency, locale)
        if result.points:
            text: str = ngettext(
                "🧾 Thank you for your purchase of {amount}! You earned <b>{points}</b> point.",
                "🧾 Thank you for your purchase of {amount}! You earned <b>{points}</b> points.",
                result.points,
            ).format(amount=amount, points=result.points)
        else:
            text = _("🧾 Thank you for your purchase of {amount}!").format(amount=amount)
        text += explanation(result, program, member.language)
        text += pending_note(result, program, locale, to_member=True)
        if result.winback_bonus:
            text += "\n" + ngettext(
                "🎁 Welcome back! +{points} bonus point.",
                "🎁 Welcome back! +{points} bonus points.",
                result.winback_bonus,
            ).format(points=result.winback_bonus)
        text += "".join("\n" + line for line in completion_lines(result.missions, program, member.language))
        text += "\n" + _balance_line(result.balance)
        text += "".join("\n" + line for line in card_lines(result.cards))
        if result.promoted is not None:
            text += "\n" + _("🏅 Congratulations, you are now {tier}! {perks}").format(
                tier=html.escape(result.promoted.name_in(member.language)),
                perks=html.escape(result.promoted.perks_in(member.language)),
            )
        return text

    return await tell(bot, i18n, member, render)


def _balance_line(balance: int) -> str:
    return ngettext("Your balance: {balance} point.", "Your balance: {balance} points.", balance).format(
        balance=balance
    )


async def notify_adjustment(bot: Bot, i18n: I18n, member: Member, delta: int, reason: str, balance: int) -> bool:
    """Tell the member that staff changed their points, and why (their reason, as they wrote it)."""

    def render() -> str:
        text: str = ngettext(
            "🪙 {delta:+d} point from our team: {reason}", "🪙 {delta:+d} points from our team: {reason}", abs(delta)
        ).format(delta=delta, reason=html.escape(reason))
        return text + "\n" + _balance_line(balance)

    return await tell(bot, i18n, member, render)


async def notify_refund(
    bot: Bot, i18n: I18n, member: Member, refunded_minor: int, points: int, balance: int, program: Program
) -> bool:
    """Tell the member that a purchase of theirs was refunded, and what it took back."""
    locale = locale_of(member.language)

    def render() -> str:
        amount = money(from_minor(refunded_minor, program), program.currency, locale)
        text: str = (
            ngettext(
                "↩️ Your purchase was refunded ({amount}): −{points} point.",
                "↩️ Your purchase was refunded ({amount}): −{points} points.",
                points,
            ).format(amount=amount, points=points)
            if points
            else _("↩️ Your purchase was refunded ({amount}).").format(amount=amount)
        )
        return text + "\n" + _balance_line(balance)

    return await tell(bot, i18n, member, render)


def friend_name(member: Member) -> str:
    return html.escape(member.first_name or _("a friend"))


async def after_payout(bot: Bot, i18n: I18n, program: Program, payout: referrals.Payout) -> None:
    """Tell the referrer (and the friend) what a qualifying purchase or an approval paid."""
    friend, referrer = payout.friend, payout.referrer
    if payout.referrer_points:
        await tell(
            bot,
            i18n,
            referrer,
            lambda: ngettext(
                "🎉 {friend} made their first purchase: you earned {points} referral point. Thank you!",
                "🎉 {friend} made their first purchase: you earned {points} referral points. Thank you!",
                payout.referrer_points,
            ).format(friend=friend_name(friend), points=payout.referrer_points),
        )
    elif payout.capped:
        await tell(
            bot,
            i18n,
            referrer,
            lambda: ngettext(
                "{friend} made their first purchase. You have reached this month's limit of {cap} paid referral, "
                "so this one earns no points.",
                "{friend} made their first purchase. You have reached this month's limit of {cap} paid referrals, "
                "so this one earns no points.",
                program.referrals.monthly_cap,
            ).format(friend=friend_name(friend), cap=program.referrals.monthly_cap),
        )
    if payout.friend_points:
        await tell(
            bot,
            i18n,
            friend,
            lambda: ngettext(
                "🎁 You got {points} bonus point for joining through {referrer}'s invitation.",
                "🎁 You got {points} bonus points for joining through {referrer}'s invitation.",
                payout.friend_points,
            ).format(points=payout.friend_points, referrer=friend_name(referrer)),
        )
