"""A member's own account: /balance and /history (paged with inline buttons)."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime

from aiogram import F, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, MenuButton, slash
from handlers.menu import BALANCE, HISTORY
from handlers.ui import edit_or_keep
from loyalty.account import EXPIRY_HORIZON_DAYS, HistoryPage, history, summary
from loyalty.members import MemberView
from loyalty.numbers import RowId
from loyalty.program import Program
from loyalty.tiers import TierProgress
from notifications.ledger import entry_label
from notifications.texts import card_lines, day, money, pending_line
from storage.database import DbSession
from storage.models import LedgerEntry


class HistoryCallback(CallbackData, prefix="hist"):
    page: RowId


BALANCE_TRIGGERS = (slash("balance"), MenuButton(BALANCE))


async def show_balance(
    message: Message,
    session: DbSession,
    member: MemberView,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    overview = await summary(session, program, member.id, member.tier, clock(), EXPIRY_HORIZON_DAYS)
    held, tier, cards = overview.balance, overview.tier, overview.cards
    lines = [
        ngettext("⭐ <b>{points}</b> point", "⭐ <b>{points}</b> points", held.points).format(points=held.points),
        _("Earned since joining: {points}").format(points=held.lifetime_points),
    ]
    if held.expiring_points and held.expiring_first:
        lines.append(
            ngettext(
                "⏳ Next to expire: {points} point on {date}.",
                "⏳ Next to expire: {points} points on {date}.",
                held.next_points,
            ).format(points=held.next_points, date=day(held.expiring_first, program.tz, i18n.current_locale))
        )
        lines.append(
            # The horizon is always several days: the number of points picks the form.
            ngettext(
                "{points} point expires in the next {days} days in all.",
                "{points} points expire in the next {days} days in all.",
                held.expiring_points,
            ).format(points=held.expiring_points, days=EXPIRY_HORIZON_DAYS)
        )
    else:
        lines.append(
            ngettext(
                "No points expire in the next {days} day.",
                "No points expire in the next {days} days.",
                EXPIRY_HORIZON_DAYS,
            ).format(days=EXPIRY_HORIZON_DAYS)
        )
    if waiting := pending_line(held.pending, program.tz, i18n.current_locale):
        lines.append(waiting)
    if tier is not None:
        lines += _tier_lines(tier, program, member.language, i18n.current_locale)
    lines += card_lines(cards)
    await message.answer("\n".join(lines))


def _tier_lines(tier: TierProgress, program: Program, language: str, locale: str) -> list[str]:
    lines = []
    if tier.current is not None:
        lines.append(
            _("🏅 Tier: <b>{tier}</b> — {perks}").format(
                tier=html.escape(tier.current.name_in(language)), perks=html.escape(tier.current.perks_in(language))
            )
        )
    if tier.next is not None:
        missing = (
            money(tier.missing, program.currency, locale)
            if program.tiers.basis == "spend"
            else ngettext("{points} point", "{points} points", int(tier.missing)).format(points=int(tier.missing))
        )
        target = html.escape(tier.next.name_in(language))
        if tier.by is not None:
            lines.append(
                _("Spend {missing} more by {date} to reach {tier}.").format(
                    missing=missing, date=day(tier.by, program.tz, locale), tier=target
                )
            )
        else:
            lines.append(_("Spend {missing} more to reach {tier}.").format(missing=missing, tier=target))
    return lines


def _render(page: HistoryPage, program: Program, locale: str) -> tuple[str, InlineKeyboardMarkup | None]:
    if not page.entries:
        return _("No points history yet."), None
    lines = [_("📜 <b>Points history</b> (page {page} of {pages})").format(page=page.page + 1, pages=page.pages), ""]
    lines += [_entry_line(entry, page, program, locale) for entry in page.entries]
    buttons = []
    if page.page > 0:
        newer = HistoryCallback(page=page.page - 1).pack()
        buttons.append(InlineKeyboardButton(text=_("◀ Newer"), callback_data=newer))
    if page.page + 1 < page.pages:
        older = HistoryCallback(page=page.page + 1).pack()
        buttons.append(InlineKeyboardButton(text=_("Older ▶"), callback_data=older))
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None


def _entry_line(entry: LedgerEntry, page: HistoryPage, program: Program, locale: str) -> str:
    promotion = page.promotions.get(entry.purchase_id) if entry.purchase_id else None
    label = entry_label(entry, program, promotion)
    return f"{day(entry.created_at, program.tz, locale)} · <b>{entry.points:+d}</b> · {label}"


async def show_history(message: Message, session: DbSession, member: MemberView, program: Program, i18n: I18n) -> None:
    text, markup = _render(await history(session, member.id, 0), program, i18n.current_locale)
    await message.answer(text, reply_markup=markup)


async def page_history(
    query: CallbackQuery,
    callback_data: HistoryCallback,
    session: DbSession,
    member: MemberView,
    program: Program,
    i18n: I18n,
) -> None:
    page = await history(session, member.id, callback_data.page)
    text, markup = _render(page, program, i18n.current_locale)
    if isinstance(query.message, Message):
        await edit_or_keep(query.message, text, markup)
    await query.answer()


def router() -> Router:
    router = Router(name="account")
    router.message.filter(IsMember())
    router.callback_query.filter(IsMember())
    for trigger in BALANCE_TRIGGERS:
        router.message.register(show_balance, trigger)
    router.message.register(show_history, slash("history"))
    router.message.register(show_history, MenuButton(HISTORY))
    router.callback_query.register(page_history, HistoryCallback.filter(F.page >= 0))
    return router
