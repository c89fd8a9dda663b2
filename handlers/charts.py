"""The /stats charts as PNG images (matplotlib, drawn off the event loop). Texts come in already translated."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from loyalty.metrics import Cohorts, Trend

CJK_FONTS = [
    "Noto Sans CJK SC",
    "Noto Sans CJK TC",
    "Noto Sans CJK JP",  # the first face of Debian's .ttc: it has every Han glyph the labels use
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "PingFang SC",
]
COLOURS = {"members": "#4C72B0", "purchases": "#DD8452", "nps": "#55A868", "tiers": "#8172B3"}


MAX_TICKS = 12  # date labels beyond this overlap: every n-th is shown
CJK_FILES = ("NotoSansCJK", "NotoSerifCJK", "SourceHanSans", "wqy-zenhei")


@cache
def cjk_font() -> str | None:
    """A font with Chinese glyphs, if the machine has one (fonts-noto-cjk on Debian).

    matplotlib lists fonts from a cache made the first time it ran: a font installed after that is missing from
    it until the cache is cleared by hand. If none is listed, the system's font folders are looked through once and
    the CJK files found are added."""
    available = {entry.name for entry in font_manager.fontManager.ttflist}
    found = next((name for name in CJK_FONTS if name in available), None)
    if found is None:
        for path in font_manager.findSystemFonts():
            if any(part in path for part in CJK_FILES):
                font_manager.fontManager.addfont(path)
        available = {entry.name for entry in font_manager.fontManager.ttflist}
        found = next((name for name in CJK_FONTS if name in available), None)
    return found


@dataclass(frozen=True)
class Labels:
    members_and_purchases: str
    new_members: str
    purchases: str
    nps_over_time: str
    tier_distribution: str
    no_tier: str
    cohorts: str
    months_after_joining: str
    join_month: str
    count: str  # the y axis of counts
    date: str
    nps_axis: str
    no_data: str  # drawn across an empty chart instead of an empty frame


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _figure(width: float, height: float) -> tuple[Figure, Any]:
    # Figures made directly, not through pyplot: no global state, so two /stats at once can draw in two threads.
    figure = Figure(figsize=(width, height))
    return figure, figure.subplots()


def _style() -> None:
    font = cjk_font()
    matplotlib.rcParams["font.family"] = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]
    matplotlib.rcParams["axes.spines.top"] = matplotlib.rcParams["axes.spines.right"] = False


_style()


def _tick_labels(trend: Trend, tz: ZoneInfo) -> list[str]:
    days = (trend.edges[-1][1] - trend.edges[0][0]).days
    pattern = "%m-%d" if days <= 182 else "%Y-%m"
    return [start.astimezone(tz).strftime(pattern) for start, _end in trend.edges]


def _dates(axis: Any, ticks: list[str], label: str) -> None:
    """Date labels under the bars, every n-th one when they would not fit."""
    step = max(1, math.ceil(len(ticks) / MAX_TICKS))
    shown = list(range(0, len(ticks), step))
    axis.set_xticks(shown, [ticks[i] for i in shown], rotation=45 if len(shown) > 8 else 0, fontsize=8)
    axis.set_xlabel(label)


def _no_data(axis: Any, labels: Labels) -> None:
    axis.text(0.5, 0.5, labels.no_data, transform=axis.transAxes, ha="center", va="center", color="#777777")


def members_and_purchases_figure(trend: Trend, tz: ZoneInfo, labels: Labels) -> Figure:
    figure, axis = _figure(8, 3.6)
    ticks = _tick_labels(trend, tz)
    positions = range(len(ticks))
    axis.bar(
        [p - 0.2 for p in positions], trend.new_members, width=0.4, label=labels.new_members, color=COLOURS["members"]
    )
    axis.bar(
        [p + 0.2 for p in positions], trend.purchases, width=0.4, label=labels.purchases, color=COLOURS["purchases"]
    )
    _dates(axis, ticks, labels.date)
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no "2.5 members"
    axis.set_ylabel(labels.count)
    axis.set_title(labels.members_and_purchases, loc="left")
    if any(trend.new_members) or any(trend.purchases):
        # Above the plot, beside the title: inside it the legend hid the tallest bars.
        axis.legend(frameon=False, ncols=2, loc="lower right", bbox_to_anchor=(1, 1), fontsize=9)
    else:
        axis.set_ylim(0, 1)
        _no_data(axis, labels)
    return figure


def members_and_purchases(trend: Trend, tz: ZoneInfo, labels: Labels) -> bytes:
    return _png(members_and_purchases_figure(trend, tz, labels))


def nps_over_time_figure(trend: Trend, tz: ZoneInfo, labels: Labels) -> Figure:
    figure, axis = _figure(8, 3.2)
    ticks = _tick_labels(trend, tz)
    points = [(i, score) for i, score in enumerate(trend.nps) if score is not None]
    if points:
        axis.plot([i for i, _ in points], [s for _, s in points], marker="o", color=COLOURS["nps"])
    else:
        _no_data(axis, labels)
    axis.axhline(0, color="#999999", linewidth=0.8)
    axis.set_ylim(-100, 100)
    axis.set_xlim(-0.5, len(ticks) - 0.5)
    _dates(axis, ticks, labels.date)
    axis.set_ylabel(labels.nps_axis)
    axis.set_title(labels.nps_over_time)
    return figure


def nps_over_time(trend: Trend, tz: ZoneInfo, labels: Labels) -> bytes:
    return _png(nps_over_time_figure(trend, tz, labels))


def tier_distribution_figure(tiers: list[tuple[str, int]], labels: Labels) -> Figure:
    figure, axis = _figure(6, 3.2)
    names = [name for name, _ in tiers]
    counts = [count for _, count in tiers]
    bars = axis.barh(names, counts, color=COLOURS["tiers"])
    axis.bar_label(bars, padding=3, fontsize=8)
    axis.invert_yaxis()
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel(labels.count)
    axis.set_title(labels.tier_distribution)
    if not any(counts):
        axis.set_xlim(0, 1)
        _no_data(axis, labels)
    return figure


def tier_distribution(tiers: list[tuple[str, int]], labels: Labels) -> bytes:
    return _png(tier_distribution_figure(tiers, labels))


def cohort_heat_map(cohorts: Cohorts, labels: Labels) -> bytes:
    size = len(cohorts.months)
    figure, axis = _figure(8, 4.6)
    grid = [[value if value is not None else float("nan") for value in row] for row in cohorts.active]
    image = axis.imshow(
        grid,
        cmap="YlGn",
        vmin=0,
        vmax=max([v for row in cohorts.active for v in row if v is not None] + [0.01]),
        aspect="auto",
    )
    for row, values in enumerate(cohorts.active):
        for column, value in enumerate(values):
            if value is not None and cohorts.sizes[row]:
                axis.text(column, row, f"{value:.0%}", ha="center", va="center", fontsize=7)
    axis.set_xticks(range(size), [str(n) for n in range(size)], fontsize=8)
    axis.set_yticks(
        range(size), [f"{_month(m)} ({n})" for m, n in zip(cohorts.months, cohorts.sizes, strict=True)], fontsize=8
    )
    axis.set_xlabel(labels.months_after_joining)
    axis.set_ylabel(labels.join_month)
    axis.set_title(labels.cohorts)
    if not any(cohorts.sizes):
        _no_data(axis, labels)
    figure.colorbar(image, ax=axis, format=lambda x, _pos: f"{x:.0%}")
    return _png(figure)


def _month(first: datetime) -> str:
    return first.strftime("%Y-%m")
