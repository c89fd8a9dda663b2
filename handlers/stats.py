"""/stats: the program's figures for a period as a card and charts; /export: members, purchases and the ledger
as CSV files. Admins only."""

from __future__ import annotations

import asyncio
import html
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from aiogram import Bot, Router
from aiogram.enums import ChatAction
from aiogram.filters import CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
)
from aiogram.utils.i18n import I18n, get_i18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission, slash
from loyalty import metrics, vip
from loyalty.exports import export_all
from loyalty.metrics import Dashboard, parse_period
from loyalty.program import Program
from loyalty.purchases import from_minor
from loyalty.roles import Permission
from notifications.figures import engagement_lines, store_rows
from notifications.refusals import unknown_store
from notifications.texts import day, lift_lines, money, observed_line, speaking, when
from storage.database import DbSession, SessionFactory

if TYPE_CHECKING:
    from handlers import charts

DEFAULT_PERIOD = "30d"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "—"
    minutes = value.total_seconds() / 60
    if minutes < 90:
        return _("{minutes} min").format(minutes=round(minutes))
    return _("{hours} h").format(hours=f"{minutes / 60:.1f}")


def _language() -> str:
    return get_i18n().current_locale.replace("_", "-")


def _tier_name(program: Program, tier: str | None) -> str:
    level = program.tiers.level(tier) if tier else None
    if level is None:
        return tier or _("No tier")
    return level.name_in(_language())


def card(board: Dashboard, program: Program) -> str:
    locale = get_i18n().current_locale
    period, m, c, nps, s, p = board.period, board.members, board.customers, board.nps, board.support, board.points
    value = money(p.outstanding_value(program), program.currency, locale)
    lines = [
        _("📊 <b>{program}</b> · {start} – {end}").format(
            program=html.escape(program.name),
            start=day(period.start, program.tz, locale),
            end=day(period.end - timedelta(seconds=1), program.tz, locale),
        ),
        "",
        _("👥 Members: {total} (+{new} new) · active {active} ({rate})").format(
            total=m.total, new=m.new, active=m.active, rate=_percent(m.engagement_rate)
        ),
        _("🔁 Retention {retention} (of 12-month customers) · churn {churn}").format(
            retention=_percent(c.retention_rate), churn=_percent(c.churn_rate)
        ),
        _(
            "🛍 Customers in the last 12 months: {customers} · repeat purchase {repeat} · loyal {loyal} · "
            "repeat within the period {period_repeat}"
        ).format(
            customers=c.customers,
            repeat=_percent(c.repeat_rate),
            loyal=_percent(c.loyal_rate),
            period_repeat=_percent(c.period_repeat_rate),
        ),
        _("⭐ NPS {score} (promoters {promoters} · passives {passives} · detractors {detractors})").format(
            score="—" if nps.score is None else f"{nps.score:+.0f}",
            promoters=nps.promoters,
            passives=nps.passives,
            detractors=nps.detractors,
        ),
        ngettext(
            "💬 CSAT {csat} ({ratings} rating) · median first response {wait}",
            "💬 CSAT {csat} ({ratings} ratings) · median first response {wait}",
            s.ratings,
        ).format(csat=_percent(s.csat), ratings=s.ratings, wait=_duration(s.median_first_response)),
        _(
            "🪙 Points: from purchases {purchases} · bonuses {bonuses} · adjustments {adjusted} · "
            "redeemed {redeemed} ({rate}) · expired {expired} · outstanding {outstanding} ({value})"
        ).format(
            purchases=p.purchases,
            bonuses=p.bonuses,
            adjusted=f"{p.adjusted:+d}" if p.adjusted else "0",
            redeemed=p.redeemed,
            rate=_percent(p.redemption_rate),
            expired=p.expired,
            outstanding=p.outstanding,
            value=value,
        ),
    ]
    # Campaign kinds with a randomized holdout in the period are measured against it; the others keep the first
    # look (recipients beside similar members), labelled as not randomized.
    measured = {found.kind for found in board.lifts}
    for found in board.lifts:
        lines += ["", "📣 " + "\n".join(lift_lines(found, program, program.analytics.effect_days, locale))]
    observed = [e for e in board.effects if e.kind not in measured]
    if observed:
        days = program.analytics.effect_days
        lines += [
            "",
            ngettext(
                "📣 Bought within {days} day of the message:", "📣 Bought within {days} days of the message:", days
            ).format(days=days),
        ]
        lines += [observed_line(e) for e in observed]
    if board.by_tier:
        lines += ["", _("🏅 By tier: average order · purchases per buyer")]
        order = {level.name: i for i, level in enumerate(program.tiers.levels)}
        for figures in sorted(board.by_tier, key=lambda t: order.get(t.tier or "", -1)):
            average = figures.average_order_minor
            amount = from_minor(round(average or 0), program)
            lines.append(
                "{tier}: {average} · {frequency}".format(
                    tier=_tier_name(program, figures.tier),
                    average="—" if average is None else money(amount, program.currency, locale),
                    frequency="—" if figures.frequency is None else f"{figures.frequency:.1f}",
                )
            )
    if engaged := engagement_lines(board, program, _language(), html.escape):
        lines += ["", *engaged]
    if board.by_store:
        lines += ["", _("🏬 By store: buyers · purchases · sales · coupons accepted · NPS of its customers")]
        lines += store_lines(board, program)
    return "\n".join(lines)


def store_lines(board: Dashboard, program: Program, store: str | None = None) -> list[str]:
    """A line a store (or only ``store``'s), in the program's order."""
    return [
        f"{html.escape(r.name)}: {r.buyers} · {r.purchases} · {r.sales} · {r.coupons} · {r.nps}"
        for r in store_rows(board, program, _language(), store)
    ]


def store_card(board: Dashboard, program: Program, store: str) -> str:
    """/stats <period> <store>: one store's figures."""
    locale = get_i18n().current_locale
    rule = program.store(store)
    period = board.period
    return "\n".join(
        [
            _("🏬 <b>{store}</b> · {start} – {end}").format(
                store=html.escape(rule.name_in(_language()) if rule else store),
                start=day(period.start, program.tz, locale),
                end=day(period.end - timedelta(seconds=1), program.tz, locale),
            ),
            "",
            _("Buyers · purchases · sales · coupons accepted · NPS of its customers"),
            *store_lines(board, program, store),
        ]
    )


class StatsLegend(CallbackData, prefix="statlegend"):
    pass


def legend() -> str:
    """What each figure of the card means, in the words of the articles merchants learn them from."""
    return "\n\n".join(
        [
            _("<b>What these figures mean</b>"),
            _(
                "👥 <b>Members</b>: members at the period's end; erased members count in no figure. <b>New</b>: "
                "joined in the period. <b>Active</b>: bought (a purchase not refunded in full, dated by when it "
                "happened), redeemed points, completed their profile, shared content or referred a friend in the "
                "period. The rate: active ÷ members."
            ),
            _(
                "🔁 <b>Retention</b> (CRR): (customers at the end − new customers) ÷ customers at the start. A "
                "customer is a member with a purchase in the 12 months before that moment, whatever the period: over "
                "a short period retention reads high next to churn. <b>Churn</b>: buyers of the previous period of "
                "the same length who bought nothing in this one."
            ),
            _(
                "🛍 <b>Repeat purchase rate</b>: customers who bought more than once in the 12 months to the "
                "period's end ÷ customers who bought in them. <b>Loyal</b>: more than 4 purchases in those 12 "
                "months ÷ the same customers. <b>Repeat within the period</b>: buyers in the period who bought more "
                "than once in it."
            ),
            _(
                "⭐ <b>NPS</b>: % promoters (9–10) − % detractors (0–6); each member counts once, with their latest "
                "answer in the period. 💬 <b>CSAT</b>: support ratings of 4 or 5 ÷ all ratings."
            ),
            _(
                "🪙 <b>Points from purchases</b>: earned by purchases made in the period, less what their refunds "
                "took back. <b>Bonuses</b> (welcome, referral, shared content, profile, birthday, win-back, VIP), "
                "<b>adjustments</b> by staff, <b>redeemed</b> and <b>expired</b>: by when they were booked. The "
                "redemption rate: redeemed ÷ (purchases + bonuses). <b>Outstanding</b>: all balances now, valued "
                "at the program's point value."
            ),
            _(
                "📣 <b>Campaign effect</b>: where a campaign kept a randomized holdout, its recipients beside the "
                "members drawn to get nothing: who bought within the effect window and sales per member, and the "
                "differences with 95% intervals (an interval that includes zero means no clear effect yet). Without "
                "a holdout, recipients beside similar members: a first look, not randomized."
            ),
            _(
                "Purchases are dated by when they happened (a till's own time, an import's dates), not by when "
                "they reached us."
            ),
        ]
    )


def _legend_button() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=_("ℹ️ What these mean"), callback_data=StatsLegend().pack())]]
    )


async def show_legend(query: CallbackQuery) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(legend())


def _labels() -> charts.Labels:
    from handlers import charts

    return charts.Labels(
        members_and_purchases=_("New members and purchases"),
        new_members=_("New members"),
        purchases=_("Purchases"),
        nps_over_time=_("NPS over time"),
        tier_distribution=_("Members by tier"),
        no_tier=_("No tier"),
        cohorts=_("Members buying again, by join month"),
        months_after_joining=_("Months after joining"),
        join_month=_("Joined (members)"),
        count=_("Count"),
        date=_("Date"),
        nps_axis=_("NPS (−100 to +100)"),
        no_data=_("No data yet"),
    )


def _charts(board: Dashboard, program: Program, i18n: I18n) -> list[tuple[str, bytes]]:
    # matplotlib is imported on the first /stats, not at every worker's start-up (it costs half a second).
    from handlers import charts

    # Chinese labels need a font with Chinese glyphs; without one the charts speak English.
    language = _language()
    if language.startswith("zh") and charts.cjk_font() is None:
        language = "en"
    with speaking(i18n, language):
        labels = _labels()
        tiers = [(_tier_name(program, level.name), board.tiers.get(level.name, 0)) for level in program.tiers.levels]
        tiers.insert(0, (labels.no_tier, board.tiers.get("", 0)))
    return [
        ("members.png", charts.members_and_purchases(board.trend, program.tz, labels)),
        ("nps.png", charts.nps_over_time(board.trend, program.tz, labels)),
        ("tiers.png", charts.tier_distribution(tiers, labels)),
        ("cohorts.png", charts.cohort_heat_map(board.cohorts, labels)),
    ]


async def stats(
    message: Message,
    command: CommandObject,
    bot: Bot,
    sessions: SessionFactory,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    words = (command.args or "").split()
    store = None  # "/stats 30d airport", or "/stats airport": one store's figures
    if words and program.store(words[-1].lower()) is not None:
        store = words.pop().lower()
    elif len(words) == 2 and program.stores:
        await message.answer(html.escape(unknown_store(program, words[1], _language())))
        return
    period = parse_period(words[0] if words else DEFAULT_PERIOD, clock(), program.tz) if len(words) < 2 else None
    if period is None:
        await message.answer(
            _("Please choose a period: 7d, 30d, 90d or 12m (any number of days or months, like 14d or 6m).")
        )
        return
    await bot.send_chat_action(message.chat.id, ChatAction.TYPING if store else ChatAction.UPLOAD_PHOTO)
    board = await metrics.board_for(sessions, program, period, clock())
    text = card(board, program) if store is None else store_card(board, program, store)
    if board.period.end < period.end - timedelta(minutes=1):
        text += "\n\n" + _("Figures as of {time}.").format(
            time=when(board.period.end, program.tz, get_i18n().current_locale)
        )
    if store is not None:
        await message.answer(text)
        return
    if program.vip is not None:
        async with sessions() as session:
            counts = await vip.vip_counts(session, clock())
        # Right now, whatever the period: how many pay for VIP, and how many of them Telegram renews.
        text += "\n\n" + _("👑 VIP now: {members} · subscriptions renewing {renewing} · cancelled {canceled}").format(
            members=counts.members, renewing=counts.renewing, canceled=counts.canceled
        )
    await message.answer(text, reply_markup=_legend_button())
    images = await asyncio.to_thread(_charts, board, program, i18n)
    await message.answer_media_group(
        [InputMediaPhoto(media=BufferedInputFile(png, filename=name)) for name, png in images]
    )


async def export_data(message: Message, session: DbSession, program: Program) -> None:
    await message.answer(_("📦 Preparing the export…"))
    with tempfile.TemporaryDirectory() as directory:
        async for path, rows in export_all(session, Path(directory), program.minor_digits):
            await message.answer_document(
                FSInputFile(path),
                caption=ngettext("{file}: {rows} row", "{file}: {rows} rows", rows).format(file=path.name, rows=rows),
            )


def router() -> Router:
    router = Router(name="stats")
    router.message.register(stats, slash("stats"), HasPermission(Permission.VIEW_REPORTS))
    router.callback_query.register(show_legend, StatsLegend.filter(), HasPermission(Permission.VIEW_REPORTS))
    router.message.register(export_data, slash("export"), HasPermission(Permission.EXPORT_DATA))
    return router
