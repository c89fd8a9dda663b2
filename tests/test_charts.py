"""The /stats charts as a merchant reads them: whole-number counts, labelled axes, dates that fit, and a note
instead of an empty frame."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from matplotlib.ticker import MaxNLocator

from handlers import charts
from loyalty.metrics import Trend

SHANGHAI = ZoneInfo("Asia/Shanghai")
LABELS = charts.Labels(
    members_and_purchases="New members and purchases",
    new_members="New members",
    purchases="Purchases",
    nps_over_time="NPS over time",
    tier_distribution="Members by tier",
    no_tier="No tier",
    cohorts="Cohorts",
    months_after_joining="Months after joining",
    join_month="Joined",
    count="Count",
    date="Date",
    nps_axis="NPS",
    no_data="No data yet",
)


def _trend(days: int, members: int = 0) -> Trend:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    edges = [(start + timedelta(days=d), start + timedelta(days=d + 1)) for d in range(days)]
    return Trend(edges, [members % 3] * days, [members] * days, [0] * days, [None] * days)


def _texts(figure: object) -> list[str]:
    return [text.get_text() for text in figure.axes[0].texts]  # type: ignore[attr-defined]


def test_counts_have_whole_number_axes_labelled_and_dates_thinned_to_fit() -> None:
    figure = charts.members_and_purchases_figure(_trend(31, members=2), SHANGHAI, LABELS)
    axis = figure.axes[0]
    locator = axis.yaxis.get_major_locator()
    assert isinstance(locator, MaxNLocator) and locator._integer  # no "1.5 members"
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("Date", "Count")
    shown = [tick.get_text() for tick in axis.get_xticklabels()]
    assert 2 <= len(shown) <= charts.MAX_TICKS, "31 days: every third one, not 31 overlapping labels"
    assert "No data yet" not in _texts(figure)


def test_an_empty_chart_says_no_data_yet() -> None:
    assert "No data yet" in _texts(charts.members_and_purchases_figure(_trend(7), SHANGHAI, LABELS))
    assert "No data yet" in _texts(charts.nps_over_time_figure(_trend(7), SHANGHAI, LABELS))
    assert "No data yet" in _texts(charts.tier_distribution_figure([("No tier", 0), ("Gold", 0)], LABELS))
    tiers = charts.tier_distribution_figure([("No tier", 3), ("Gold", 1)], LABELS)
    assert "No data yet" not in _texts(tiers) and isinstance(tiers.axes[0].xaxis.get_major_locator(), MaxNLocator)
