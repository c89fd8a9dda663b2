"""Figures as people read them, shared by /stats and the console's dashboard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiogram.utils.i18n import gettext as _

from loyalty.metrics import Dashboard
from loyalty.program import Program
from loyalty.purchases import from_minor
from notifications.texts import locale_of, money


@dataclass(frozen=True)
class StoreRow:
    key: str
    name: str
    buyers: int
    purchases: int
    sales: str
    coupons: int
    nps: str


def store_rows(board: Dashboard, program: Program, language: str, store: str | None = None) -> list[StoreRow]:
    """The per-store table in ``language``: every store in the program's order, or only ``store``."""
    locale = locale_of(language)
    return [
        StoreRow(
            key=f.store,
            name=rule.name_in(language) if (rule := program.store(f.store)) else f.store,
            buyers=f.buyers,
            purchases=f.purchases,
            sales=money(from_minor(f.sales_minor, program), program.currency, locale),
            coupons=f.redemptions,
            nps="—" if f.nps.score is None else f"{f.nps.score:+.0f}",
        )
        for f in board.by_store
        if store is None or f.store == store
    ]


def engagement_lines(board: Dashboard, program: Program, language: str, quote: Callable[[str], str] = str) -> list[str]:
    """Check-ins and each mission's completions in the period (nothing when the program has neither), for /stats
    (``quote``: escape for a chat message) and the console's dashboard."""
    figures, lines = board.engagement, []
    if program.checkin.enabled or figures.checkins:
        lines.append(
            _("📅 Check-ins: {count} · members checking in: {members}").format(
                count=figures.checkins, members=figures.checkin_members
            )
        )
    if figures.missions:
        lines.append(_("🎯 Missions: completed · of members"))
        names = {rule.key: rule.name_in(language) for rule in program.missions}
        lines += [
            f"{quote(names.get(f.key, f.key))}: {f.completed} · {'—' if f.rate is None else f'{f.rate:.0%}'}"
            for f in figures.missions
        ]
    return lines
