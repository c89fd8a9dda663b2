"""The console's dashboard, for admins: the /stats figures for a period, as cards and charts, and the /export CSV
files (and the period's figures) as downloads.

The figures are the ones /stats shows and ``loyalty report`` prints, made by the same function
(``loyalty.metrics.board_for``): for the standard periods (7d, 30d, 90d, 12m) the scheduler's snapshot, refreshed
every 10 minutes, so opening the dashboard reads one row however big the program; a snapshot older than
``SNAPSHOT_MAX_AGE`` (the scheduler stopped) is computed again once and stored for the next reader, as /stats does.
Another length (``?period=14d``) is computed on each request, as /stats does: the chooser offers only the standard
periods. The JSON carries ``loyalty report --format json``'s document as it is (``program``, ``period``,
``figures``, ``trend``, ``cohorts``, ``tiers``) beside what the page shows, already in the viewer's language.

The charts are drawn here, as shapes in a 360-unit-wide box that the template writes out as inline SVG, so they
come with the page; static/dashboard.js adds the tooltips, the series toggles and the period chooser. Colours are
CSS classes (app.css), from Telegram's theme.

Downloads: ``GET <base>api/console/export/<kind>.csv`` with the usual ``Authorization: tma`` header (the page
fetches it and saves the file), or with ``?t=`` from ``GET <base>api/console/export/<kind>/link``, a link signed
for that viewer and file for five minutes, for Telegram's ``WebApp.downloadFile``, which fetches a URL itself and
cannot send a header. Either way the viewer's role is checked when the file is served."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import math
from dataclasses import asdict
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlencode

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiohttp import web
from pydantic import Field

from loyalty import metrics
from loyalty.exports import EXPORTS, stream_csv
from loyalty.members import identify
from loyalty.metrics import Dashboard, Period, parse_period
from loyalty.program import Program
from loyalty.report import csv_rows, document
from loyalty.roles import Permission
from notifications.figures import engagement_lines, store_rows
from notifications.refusals import unknown_store
from notifications.texts import (
    day,
    lift_lines,
    locale_of,
    money,
    month,
    number,
    observed_line,
    short_day,
    short_money,
    short_month,
    when,
)
from web.miniapp.auth import Viewer
from web.miniapp.core import (
    LANGUAGE,
    VIEWER,
    Action,
    Handler,
    Model,
    Refused,
    Screen,
    as_viewer,
    authenticated,
    json_of,
    mount,
    require,
    static_roles,
)
from web.services import SERVICES, WebServices

DEFAULT_PERIOD = "30d"
CHOICES = metrics.SNAPSHOT_PERIODS  # the chooser's periods: the ones the scheduler keeps snapshots of
KINDS = (*EXPORTS, "figures")  # members, purchases, ledger as /export sends them; the period's figures
LINK_AGE = 300  # seconds a signed download link works
WIDTH = 360  # the charts' box: a phone's width, scaled to fit


def _admin(request: web.Request, permission: Permission) -> None:
    """The console is for admins; the figures need /stats's permission, the tables /export's."""
    require(request, Permission.MANAGE_STAFF)
    require(request, permission)


def _period(request: web.Request) -> Period:
    services = request.app[SERVICES]
    text = request.query.get("period", DEFAULT_PERIOD)
    period = parse_period(text[:16], services.clock(), services.program.tz)
    if period is None:
        raise Refused(
            400,
            "invalid_period",
            _("Please choose a period: 7d, 30d, 90d or 12m (any number of days or months, like 14d or 6m)."),
        )
    return period


# ------------------------------------------------------------------------------------------------ the models


class PeriodOut(Model):
    label: str
    start: str = Field(description="ISO 8601, in the program's timezone")
    end: str = Field(description="ISO 8601, in the program's timezone: when the figures were computed")
    timezone: str


class FigureOut(Model):
    section: str
    figure: str
    value: int | float | None = Field(description="A rate as a fraction; null without data")


class TrendOut(Model):
    edges: list[list[str]] = Field(description="[start, end) of each bucket, ISO 8601")
    new_members: list[int]
    purchases: list[int]
    buyers: list[int]
    nps: list[float | None]


class CohortsOut(Model):
    months: list[str]
    sizes: list[int]
    active: list[list[float | None]]


class ChoiceOut(Model):
    label: str
    name: str
    chosen: bool


class StoreChoiceOut(Model):
    key: str
    name: str
    chosen: bool


class StoreRowOut(Model):
    key: str
    name: str
    buyers: int
    purchases: int
    sales: str
    coupons: int
    nps: str


class CardOut(Model):
    key: str
    label: str
    value: str
    note: str | None


class SeriesOut(Model):
    name: str
    lines: list[str] = Field(description="SVG polyline points, one per unbroken stretch")


class MarkOut(Model):
    """One shape with a value: a bar, a point or a heat map cell."""

    shape: str = Field(description="rect or circle")
    x: float
    y: float
    w: float = Field(description="A rect's width, a circle's radius")
    h: float
    series: int
    tip: str = Field(description="What the tooltip says")
    opacity: float | None = None


class TextOut(Model):
    x: float
    y: float
    text: str
    anchor: str = "middle"


class RuleOut(Model):
    x1: float
    y1: float
    x2: float
    y2: float
    strong: bool = False


class ChartOut(Model):
    key: str
    title: str
    width: int
    height: int
    series: list[SeriesOut]
    marks: list[MarkOut]
    texts: list[TextOut]
    rules: list[RuleOut]
    empty: str | None = Field(description="Said across a chart with nothing to show")


class ExportOut(Model):
    kind: str
    file_name: str
    label: str


class EffectOut(Model):
    kind: str = Field(description="birthday, winback or broadcast")
    randomized: bool = Field(description="Measured against a randomized holdout; false: beside similar members")
    lines: list[str] = Field(description="What the figures say, in the viewer's language")


class DashboardOut(Model):
    # loyalty report --format json, as it is
    program: str
    period: PeriodOut
    figures: list[FigureOut]
    trend: TrendOut
    cohorts: CohortsOut
    tiers: dict[str, int]
    # the page's words, in the viewer's language
    title: str
    dates: str = Field(description="The period's first and last day")
    as_of: str | None = Field(description="When the figures are older than the request: their time")
    choices: list[ChoiceOut]
    cards: list[CardOut]
    charts: list[ChartOut] = Field(description="The whole program's; none while one store is chosen")
    effects: list[EffectOut]
    engagement: list[str] = Field(default_factory=list, description="Check-ins and missions, as /stats says them")
    exports: list[ExportOut]
    store: str | None = Field(default=None, description="The [[stores]] key chosen (?store=), else all stores")
    stores: list[StoreChoiceOut] = Field(default_factory=list, description="Empty when the program lists none")
    store_rows: list[StoreRowOut] = Field(default_factory=list, description="The per-store table (the chosen one)")


class LinkOut(Model):
    url: str = Field(description="Relative to the app's page; works without a header for five minutes")
    file_name: str


# ------------------------------------------------------------------------------------------------ the charts


def _nice(top: float) -> float:
    """The axis' top: 1, 2 or 5 times a power of ten, at least ``top``."""
    if top <= 0:
        return 1
    power = 10 ** math.floor(math.log10(top))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= top)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


class _Buckets:
    """The trend's buckets as the chart names them: days, weeks or months, as ``metrics.buckets`` cut them."""

    def __init__(self, board: Dashboard, program: Program, locale: str) -> None:
        self.edges = board.trend.edges
        self.tz, self.locale = program.tz, locale
        self.months = board.period.length.days > 182
        self.weeks = not self.months and board.period.length.days > 31

    def tick(self, index: int) -> str:
        start = self.edges[index][0]
        if not self.months:
            return short_day(start, self.tz, self.locale)
        if index == 0 or start.astimezone(self.tz).month == 1:
            return month(start, self.tz, self.locale)  # the year where it starts or changes
        return short_month(start, self.tz, self.locale)

    def name(self, index: int) -> str:
        start, end = self.edges[index]
        if self.months:
            return month(start, self.tz, self.locale)
        if self.weeks:
            last = end - timedelta(seconds=1)
            return f"{day(start, self.tz, self.locale)} – {day(last, self.tz, self.locale)}"
        return day(start, self.tz, self.locale)


class _Plot:
    """A plot area in the chart's box, with a y axis from ``low`` to ``high``."""

    left, right, top, bottom = 40.0, 8.0, 12.0, 24.0

    def __init__(self, height: int, count: int, low: float, high: float) -> None:
        self.height, self.count, self.low, self.high = height, max(count, 1), low, high
        self.inner = WIDTH - self.left - self.right

    def x(self, index: int) -> float:
        return round(self.left + (index + 0.5) * self.inner / self.count, 1)

    def y(self, value: float) -> float:
        span = (self.height - self.top - self.bottom) * (value - self.low) / (self.high - self.low)
        return round(self.height - self.bottom - span, 1)

    def axis(self, ticks: list[tuple[float, str]], below: list[str]) -> tuple[list[TextOut], list[RuleOut]]:
        texts = [TextOut(x=self.left - 4, y=self.y(v) + 3.5, text=label, anchor="end") for v, label in ticks]
        rules = [
            RuleOut(x1=self.left, y1=self.y(v), x2=WIDTH - self.right, y2=self.y(v), strong=v == 0) for v, _ in ticks
        ]
        step = max(1, math.ceil(len(below) / 4))  # at most four dates under a phone-wide chart
        last = len(below) - 1
        for index in range(0, len(below), step):
            if index == 0 and last > 0:  # the first and the last inside the box, the others under their point
                x, anchor = self.left, "start"
            elif index == last and last > 0:
                x, anchor = WIDTH - self.right, "end"
            else:
                x, anchor = self.x(index), "middle"
            texts.append(TextOut(x=x, y=self.height - 6, text=below[index], anchor=anchor))
        return texts, rules


def _line(plot: _Plot, values: list[float | None]) -> list[str]:
    """Polyline points, broken where a value is missing."""
    stretches: list[list[str]] = [[]]
    for index, value in enumerate(values):
        if value is None:
            stretches.append([])
        else:
            stretches[-1].append(f"{plot.x(index)},{plot.y(value)}")
    return [" ".join(points) for points in stretches if points]


def members_chart(board: Dashboard, buckets: _Buckets, locale: str) -> ChartOut:
    trend, height = board.trend, 190
    series = [(_("New members"), trend.new_members), (_("Purchases"), trend.purchases)]
    top = max(_nice(max([*trend.new_members, *trend.purchases, 0])), 2)
    plot = _Plot(height, len(trend.edges), 0, top)
    ticks = [(v, number(v, locale, compact=True)) for v in (0, top / 2, top) if v == int(v)]  # counts are whole
    texts, rules = plot.axis(ticks, [buckets.tick(i) for i in range(len(trend.edges))])
    marks = [
        MarkOut(
            shape="circle",
            x=plot.x(i),
            y=plot.y(value),
            w=3,
            h=0,
            series=s,
            tip=f"{buckets.name(i)} · {name} {number(value, locale)}",
        )
        for s, (name, values) in enumerate(series)
        for i, value in enumerate(values)
    ]
    return ChartOut(
        key="members",
        title=_("New members and purchases"),
        width=WIDTH,
        height=height,
        series=[SeriesOut(name=name, lines=_line(plot, list(values))) for name, values in series],
        marks=marks,
        texts=texts,
        rules=rules,
        empty=None if any(trend.new_members) or any(trend.purchases) else _("No data yet"),
    )


def nps_chart(board: Dashboard, buckets: _Buckets) -> ChartOut:
    trend, height = board.trend, 170
    plot = _Plot(height, len(trend.edges), -100, 100)
    texts, rules = plot.axis(
        [(-100, "−100"), (0, "0"), (100, "+100")], [buckets.tick(i) for i in range(len(trend.edges))]
    )
    marks = [
        MarkOut(
            shape="circle",
            x=plot.x(i),
            y=plot.y(score),
            w=3,
            h=0,
            series=0,
            tip=f"{buckets.name(i)} · NPS {score:+.0f}",
        )
        for i, score in enumerate(trend.nps)
        if score is not None
    ]
    return ChartOut(
        key="nps",
        title=_("NPS over time"),
        width=WIDTH,
        height=height,
        series=[SeriesOut(name="NPS", lines=_line(plot, trend.nps))],
        marks=marks,
        texts=texts,
        rules=rules,
        empty=None if marks else _("No data yet"),
    )


def _bars(key: str, title: str, rows: list[tuple[str, int, str, str]], *, coloured: bool) -> ChartOut:
    """Horizontal bars: (name, value, what the bar's end says, the tooltip) a row."""
    row, label_width, value_width = 30, 96.0, 92.0
    height = 8 + row * len(rows)
    top = max([value for _, value, _, _ in rows] + [0])
    inner = WIDTH - label_width - value_width
    marks, texts = [], []
    for index, (name, value, shown, tip) in enumerate(rows):
        y = 8 + index * row
        width = round(inner * value / top, 1) if top else 0
        series = index if coloured else 0
        marks.append(MarkOut(shape="rect", x=label_width, y=y, w=max(width, 1.5), h=row - 10, series=series, tip=tip))
        texts.append(TextOut(x=label_width - 6, y=y + 14, text=name, anchor="end"))
        texts.append(TextOut(x=label_width + max(width, 1.5) + 4, y=y + 14, text=shown, anchor="start"))
    return ChartOut(
        key=key,
        title=title,
        width=WIDTH,
        height=height,
        series=[],
        marks=marks,
        texts=texts,
        rules=[],
        empty=None if top else _("No data yet"),
    )


def tiers_chart(board: Dashboard, program: Program, language: str, locale: str) -> ChartOut:
    names = [(_("No tier"), "")] + [(level.name_in(language), level.name) for level in program.tiers.levels]
    known = {key for _, key in names}
    names += [(key, key) for key in board.tiers if key not in known]  # a tier the program no longer has
    total = sum(board.tiers.values())
    rows = []
    for name, key in names:
        count = board.tiers.get(key, 0)
        share = _pct(count / total if total else None)
        rows.append((name, count, number(count, locale, compact=True), f"{name} · {number(count, locale)} ({share})"))
    return _bars("tiers", _("Members by tier"), rows, coloured=False)


def points_chart(board: Dashboard, program: Program, locale: str) -> ChartOut:
    p = board.points
    rows = []
    for name, points in (
        (_("Earned"), p.earned),
        (_("Redeemed"), p.redeemed),
        (_("Expired"), p.expired),
        (_("Outstanding"), p.outstanding),
    ):
        amount = Decimal(points) * program.analytics.point_value
        shown = f"{number(points, locale, compact=True)} · {short_money(amount, program.currency, locale)}"
        tip = f"{name} · {number(points, locale)} ({money(amount, program.currency, locale)})"
        rows.append((name, points, shown, tip))
    return _bars("points", _("Points earned, redeemed, expired and outstanding"), rows, coloured=True)


def cohorts_chart(board: Dashboard, program: Program, locale: str) -> ChartOut:
    cohorts = board.cohorts
    count = len(cohorts.months)
    left, top, cell_h = 70.0, 18.0, 16.0
    cell_w = (WIDTH - left - 4) / max(count, 1)
    height = int(top + cell_h * count + 24)
    highest = max([v for row in cohorts.active for v in row if v is not None] + [0.0])
    after = _("Months after joining")
    texts = [TextOut(x=round(left + (n + 0.5) * cell_w, 1), y=top - 6, text=str(n)) for n in range(count)]
    texts.append(TextOut(x=left + (WIDTH - left) / 2, y=height - 6, text=after))
    marks = []
    for row, (first, size, values) in enumerate(zip(cohorts.months, cohorts.sizes, cohorts.active, strict=True)):
        y = top + row * cell_h
        name = month(first, program.tz, locale)
        texts.append(TextOut(x=left - 6, y=y + 11.5, text=name, anchor="end"))
        for n, value in enumerate(values):
            if n >= count - row:
                break  # months still to come
            if value is None:  # nobody joined that month: a faint cell, so the triangle keeps its shape
                shade, tip = 0.06, f"{name} (0)"
            else:
                shade = 0.06 + 0.94 * value / highest if highest else 0.06
                buyers = round(value * size)
                tip = f"{name} ({number(size, locale)}) · {after} {n}: {_pct(value)} ({number(buyers, locale)})"
            marks.append(
                MarkOut(
                    shape="rect",
                    x=round(left + n * cell_w + 0.5, 1),
                    y=y + 0.5,
                    w=round(cell_w - 1, 1),
                    h=cell_h - 1,
                    series=0,
                    tip=tip,
                    opacity=round(shade, 3),
                )
            )
    return ChartOut(
        key="cohorts",
        title=_("Members buying again, by join month"),
        width=WIDTH,
        height=height,
        series=[],
        marks=marks,
        texts=texts,
        rules=[],
        empty=None if any(cohorts.sizes) else _("No data yet"),
    )


def _cards(board: Dashboard, program: Program, locale: str) -> list[CardOut]:
    m, c, nps, p = board.members, board.customers, board.nps, board.points
    outstanding = short_money(p.outstanding_value(program), program.currency, locale)  # a third of a phone wide
    return [
        CardOut(
            key="members",
            label=_("Members"),
            value=number(m.total, locale),
            note=_("+{count} new").format(count=number(m.new, locale)),
        ),
        CardOut(
            key="active",
            label=_("Active"),
            value=_pct(m.engagement_rate),
            note=number(m.active, locale),
        ),
        CardOut(
            key="nps",
            label="NPS",
            value="—" if nps.score is None else f"{nps.score:+.0f}",
            note=ngettext("{count} answer", "{count} answers", nps.answers).format(count=number(nps.answers, locale)),
        ),
        CardOut(
            key="retention",
            label=_("Retention"),
            value=_pct(c.retention_rate),
            note=_("churn {rate}").format(rate=_pct(c.churn_rate)),
        ),
        CardOut(
            key="repeat",
            label=_("Repeat purchase"),
            value=_pct(c.repeat_rate),
            note=_("loyal {rate}").format(rate=_pct(c.loyal_rate)),
        ),
        CardOut(
            key="outstanding",
            label=_("Outstanding"),
            value=outstanding,
            note=ngettext("{count} point", "{count} points", p.outstanding).format(count=number(p.outstanding, locale)),
        ),
    ]


def _effects(board: Dashboard, program: Program, locale: str) -> list[EffectOut]:
    """The campaigns' effect, as /stats says it: against the randomized holdout where one was kept, else the
    observational first look, labelled so."""
    days = program.analytics.effect_days
    out = [
        EffectOut(kind=found.kind, randomized=True, lines=lift_lines(found, program, days, locale))
        for found in board.lifts
    ]
    measured = {found.kind for found in board.lifts}
    out += [
        EffectOut(kind=e.kind, randomized=False, lines=[observed_line(e)])
        for e in board.effects
        if e.kind not in measured
    ]
    return out


def _choice_name(label: str) -> str:
    count, unit = int(label[:-1]), label[-1]
    if unit == "d":
        return ngettext("{count} day", "{count} days", count).format(count=count)
    return ngettext("{count} month", "{count} months", count).format(count=count)


def _exports(period: Period) -> list[ExportOut]:
    names = {
        "members": _("Members"),
        "purchases": _("Purchases"),
        "ledger": _("Points ledger"),
        "figures": _("Figures for the period"),
    }
    return [ExportOut(kind=kind, file_name=_file_name(kind, period), label=names[kind]) for kind in KINDS]


def _file_name(kind: str, period: Period) -> str:
    return f"figures-{period.label}.csv" if kind == "figures" else f"{kind}.csv"


def _store_cards(row: StoreRowOut) -> list[CardOut]:
    return [
        CardOut(key="store-buyers", label=_("Buyers"), value=str(row.buyers), note=row.name),
        CardOut(key="store-purchases", label=_("Purchases"), value=str(row.purchases), note=None),
        CardOut(key="store-sales", label=_("Sales"), value=row.sales, note=None),
        CardOut(key="store-coupons", label=_("Coupons accepted"), value=str(row.coupons), note=None),
        CardOut(key="store-nps", label=_("NPS of its customers"), value=row.nps, note=None),
    ]


def dashboard_out(
    board: Dashboard, program: Program, asked: Period, language: str, store: str | None = None
) -> DashboardOut:
    locale = locale_of(language)
    report = document(board, program)
    buckets = _Buckets(board, program, locale)
    period = board.period
    stale = period.end < asked.end - timedelta(minutes=1)
    choices = [ChoiceOut(label=label, name=_choice_name(label), chosen=label == period.label) for label in CHOICES]
    if period.label not in CHOICES:
        choices.append(ChoiceOut(label=period.label, name=_choice_name(period.label), chosen=True))
    rows = [StoreRowOut(**asdict(row)) for row in store_rows(board, program, language, store)]
    return DashboardOut(
        **report,
        title=_("Dashboard"),
        dates=f"{day(period.start, program.tz, locale)} – {day(period.end - timedelta(seconds=1), program.tz, locale)}",
        as_of=_("Figures as of {time}.").format(time=when(period.end, program.tz, locale)) if stale else None,
        choices=choices,
        cards=_store_cards(rows[0]) if store is not None and rows else _cards(board, program, locale),
        charts=[]
        if store is not None
        else [
            members_chart(board, buckets, locale),
            nps_chart(board, buckets),
            points_chart(board, program, locale),
            tiers_chart(board, program, language, locale),
            cohorts_chart(board, program, locale),
        ],
        effects=_effects(board, program, locale),
        engagement=engagement_lines(board, program, language),
        exports=_exports(period),
        store=store,
        stores=[StoreChoiceOut(key=s.key, name=s.name_in(language), chosen=s.key == store) for s in program.stores],
        store_rows=rows,
    )


async def _board(services: WebServices, period: Period) -> Dashboard:
    return await metrics.board_for(services.sessions, services.program, period, services.clock())


async def load_dashboard(request: web.Request) -> DashboardOut:
    _admin(request, Permission.VIEW_REPORTS)
    services = request.app[SERVICES]
    asked = _period(request)
    store = (request.query.get("store") or "").strip().lower()[:32] or None
    if store is not None and services.program.store(store) is None:
        raise Refused(400, "unknown_store", unknown_store(services.program, store, request[LANGUAGE]))
    board = await _board(services, asked)
    return dashboard_out(board, services.program, asked, request[LANGUAGE], store)


# ------------------------------------------------------------------------------------------------ downloads


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise web.HTTPNotFound()
    _admin(request, Permission.VIEW_REPORTS if kind == "figures" else Permission.EXPORT_DATA)
    return kind


def _signature(secret: str, viewer: int, kind: str, period: str, expires: int) -> str:
    message = f"console-export:{viewer}:{kind}:{period}:{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def link_token(secret: str, viewer: int, kind: str, period: str, now: float) -> str:
    expires = int(now) + LINK_AGE
    return f"{viewer}.{expires}.{_signature(secret, viewer, kind, period, expires)}"


def _token_viewer(secret: str, token: str, kind: str, period: str, now: float) -> int | None:
    """The viewer a download link was signed for, if it is this file's and not expired."""
    viewer, _, rest = token.partition(".")
    expires, _, signature = rest.partition(".")
    if not (viewer.isdigit() and expires.isdigit()) or len(token) > 128:
        return None
    if int(expires) < now or int(expires) > now + LINK_AGE + 60:
        return None
    wanted = _signature(secret, int(viewer), kind, period, int(expires))
    return int(viewer) if hmac.compare_digest(wanted, signature) else None


async def export_link(request: web.Request) -> web.Response:
    kind = _kind(request)
    services = request.app[SERVICES]
    period = _period(request)
    now = services.clock().timestamp()
    token = link_token(services.bot.token, request[VIEWER].telegram_id, kind, period.label, now)
    query = urlencode({"period": period.label, "t": token})
    return json_of(LinkOut(url=f"api/console/export/{kind}.csv?{query}", file_name=_file_name(kind, period)))


async def export_file(request: web.Request) -> web.StreamResponse:
    kind = _kind(request)
    services = request.app[SERVICES]
    period = _period(request)
    headers = {
        "Content-Disposition": f'attachment; filename="{_file_name(kind, period)}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if kind == "figures":
        board = await _board(services, period)
        buffer = io.StringIO()
        buffer.write("\ufeff")
        csv.writer(buffer).writerows(csv_rows(board, services.program))
        return web.Response(body=buffer.getvalue().encode(), content_type="text/csv", charset="utf-8", headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_type, response.charset = "text/csv", "utf-8"
    async with services.sessions() as session:
        chunks = stream_csv(session, kind, services.program.minor_digits)
        first = await anext(chunks)  # a database error still answers 500 before the headers are sent
        await response.prepare(request)
        await response.write(first.encode())
        async for chunk in chunks:
            await response.write(chunk.encode())
    await response.write_eof()
    return response


def _signed(handler: Handler) -> Handler:
    """``authenticated``, or a link signed by ``export_link`` (``?t=``), for a client that cannot send a header."""
    with_header = authenticated(handler)

    async def wrapped(request: web.Request) -> web.StreamResponse:
        token = request.query.get("t")
        if token is None or request.headers.get("Authorization"):
            return await with_header(request)
        services = request.app[SERVICES]
        kind = request.match_info["kind"]
        period = request.query.get("period", DEFAULT_PERIOD)
        viewer_id = _token_viewer(services.bot.token, token, kind, period, services.clock().timestamp())
        if viewer_id is None:
            return await with_header(request)  # answers 401 as for any request without valid initData
        async with services.sessions() as session:
            member, role = await identify(session, static_roles(services), viewer_id)
        viewer = Viewer(viewer_id, member.first_name if member else "", None, member, role)
        return await as_viewer(request, viewer, handler)

    return wrapped


SCREENS = [
    Screen(
        "console/dashboard",
        load_dashboard,
        "console_dashboard.html",
        DashboardOut,
        "The /stats figures for a period (?period=30d) with charts, from the scheduler's snapshots, admins",
    ),
]


ACTIONS: list[Action] = []  # the downloads below are GETs with their own authentication


def setup(app: web.Application, base: str) -> None:
    mount(app, base, SCREENS, ACTIONS)
    app.router.add_get(base + "api/console/export/{kind}.csv", _signed(export_file))
    app.router.add_get(base + "api/console/export/{kind}/link", authenticated(export_link))
