"""Figures as people read them, shared by /stats and the console's dashboard."""

from __future__ import annotations

from dataclasses import dataclass

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
