"""The program's figures as one plain document: what ``loyalty report`` prints (as JSON, a table or CSV) and what
the console's dashboard serves, made in one place so that the two always agree."""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from loyalty.lift import MINIMUM, Lift
from loyalty.metrics import Dashboard
from loyalty.program import Program
from loyalty.purchases import from_minor


@dataclass(frozen=True)
class Share:
    """A rate: 0.8 in JSON, "80.0%" in the table and CSV; None (no data) is null, or blank."""

    value: float | None


def _percent(value: float | None) -> Share:
    return Share(value)


def shown(value: Any) -> str:
    """A figure as the table and the CSV show it."""
    if isinstance(value, Share):
        return "" if value.value is None else f"{value.value:.1%}"
    return "" if value is None else str(value)


def number(value: Any) -> Any:
    """A figure as JSON carries it: numbers as numbers, nothing as null."""
    if isinstance(value, Share):
        return value.value
    if isinstance(value, Decimal):
        return float(value)
    return value


def store_rows(board: Dashboard, program: Program, store: str | None = None) -> list[tuple[str, str, Any]]:
    """The per-store table (``[[stores]]``): every store's figures, or only ``store``'s."""
    out: list[tuple[str, str, Any]] = []
    for f in board.by_store:
        if store is not None and f.store != store:
            continue
        rule = program.store(f.store)
        section = f"store: {rule.name if rule else f.store}"
        out += [
            (section, "buyers", f.buyers),
            (section, "purchases", f.purchases),
            (section, f"sales ({program.currency}, net of refunds)", from_minor(f.sales_minor, program)),
            (section, "coupons accepted", f.redemptions),
            (section, "NPS of its customers", None if f.nps.score is None else round(f.nps.score, 1)),
            (section, "NPS answers", f.nps.answers),
        ]
    return out


def rows(board: Dashboard, program: Program, store: str | None = None) -> list[tuple[str, str, Any]]:
    """(section, figure, value) for every figure: the one list the three formats are made from. With ``store``
    (a ``[[stores]]`` key), that store's figures only."""
    if store is not None:
        return store_rows(board, program, store)
    m, c, nps, s, p = board.members, board.customers, board.nps, board.support, board.points
    wait = s.median_first_response
    value = p.outstanding_value(program)
    out: list[tuple[str, str, Any]] = [
        ("members", "total", m.total),
        ("members", "new", m.new),
        ("members", "active", m.active),
        ("members", "engagement rate", _percent(m.engagement_rate)),
        ("customers", "at start", c.at_start),
        ("customers", "at end", c.at_end),
        ("customers", "new", c.new),
        ("customers", "retention rate (12-month customers)", _percent(c.retention_rate)),
        ("customers", "in the last 12 months", c.customers),
        ("customers", "repeat purchase rate (12 months)", _percent(c.repeat_rate)),
        ("customers", "repeat purchase rate within the period", _percent(c.period_repeat_rate)),
        ("customers", "loyal customer rate (12 months)", _percent(c.loyal_rate)),
        ("customers", "churn rate", _percent(c.churn_rate)),
        ("nps", "score", None if nps.score is None else round(nps.score, 1)),
        ("nps", "promoters", nps.promoters),
        ("nps", "passives", nps.passives),
        ("nps", "detractors", nps.detractors),
        ("support", "csat", _percent(s.csat)),
        ("support", "ratings", s.ratings),
        ("support", "median first response (min)", None if wait is None else round(wait.total_seconds() / 60, 1)),
        ("points", "from purchases (net of refunds)", p.purchases),
        ("points", "bonuses", p.bonuses),
        ("points", "adjustments", p.adjusted),
        ("points", "redeemed", p.redeemed),
        ("points", "expired", p.expired),
        ("points", "outstanding", p.outstanding),
        (
            "points",
            f"outstanding value ({program.currency})",
            value.quantize(Decimal(1).scaleb(-program.minor_digits)),
        ),
        ("points", "redemption rate", _percent(p.redemption_rate)),
    ]
    days = program.analytics.effect_days
    for found in board.lifts:
        out += _lift_rows(found, program, days)
    measured = {found.kind for found in board.lifts}
    for e in board.effects:
        if e.kind in measured:
            continue  # measured against its holdout above
        section = f"effect (observational, no holdout): {e.kind}"
        out += [
            (section, "recipients", e.recipients),
            (section, f"bought within {days} days", _percent(e.rate)),
            (section, "similar members who bought", _percent(e.baseline)),
        ]
    for t in board.by_tier:
        name = t.tier or "(no tier)"
        average = t.average_order_minor
        out += [
            (f"tier: {name}", "buyers", t.members),
            (f"tier: {name}", "purchases", t.purchases),
            (
                f"tier: {name}",
                f"average order ({program.currency})",
                None if average is None else from_minor(round(average), program),
            ),
            (f"tier: {name}", "purchases per buyer", None if t.frequency is None else round(t.frequency, 2)),
        ]
    return out + engagement_rows(board, program) + store_rows(board, program)


def engagement_rows(board: Dashboard, program: Program) -> list[tuple[str, str, Any]]:
    """Daily check-ins and each mission's completions in the period (none when the program has neither)."""
    figures = board.engagement
    out: list[tuple[str, str, Any]] = []
    if program.checkin.enabled or figures.checkins:
        out += [
            ("check-in", "check-ins", figures.checkins),
            ("check-in", "members checking in", figures.checkin_members),
        ]
    names = {rule.key: rule.name for rule in program.missions}
    for f in figures.missions:
        section = f"mission: {names.get(f.key, f.key)}"
        out += [(section, "completed", f.completed), (section, "completion rate", _percent(f.rate))]
    return out


def _money(minor: float | None, program: Program) -> Decimal | None:
    return None if minor is None else from_minor(round(minor), program)


def _lift_rows(found: Lift, program: Program, days: int) -> list[tuple[str, str, Any]]:
    """A kind's recipients and randomized holdout, and the differences with 95% intervals (blank when the groups
    are too small to tell)."""
    section, currency = f"lift vs holdout: {found.kind}", program.currency
    out: list[tuple[str, str, Any]] = []
    for name, group in (("recipients", found.treated), ("holdout", found.holdout)):
        out += [
            (section, f"{name}: members", group.members),
            (section, f"{name}: bought within {days} days", _percent(group.conversion)),
            (section, f"{name}: sales per member ({currency})", _money(group.sales_per_member, program)),
        ]
    c, s = found.conversion, found.sales
    out += [
        (section, "buyers difference", None if c is None else _percent(c.estimate)),
        (section, "buyers difference, 95% low", None if c is None else _percent(c.low)),
        (section, "buyers difference, 95% high", None if c is None else _percent(c.high)),
        (section, f"sales per member difference ({currency})", None if s is None else _money(s.estimate, program)),
        (section, f"sales per member difference, 95% low ({currency})", None if s is None else _money(s.low, program)),
        (
            section,
            f"sales per member difference, 95% high ({currency})",
            None if s is None else _money(s.high, program),
        ),
        # Numbers, as every figure: the console's JSON and the CSV carry them alike.
        (section, f"too small to tell (1: fewer than {MINIMUM} members in a group)", int(found.too_small)),
        (section, "buyers verdict (1: lift, 0: no clear difference, -1: drop)", None if c is None else c.sign),
    ]
    return out


def plain(value: Any) -> Any:
    """Dataclasses, datetimes and durations as JSON's types."""
    if is_dataclass(value) and not isinstance(value, type):
        return {key: plain(item) for key, item in asdict(value).items()}
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def document(board: Dashboard, program: Program, store: str | None = None) -> dict[str, Any]:
    """``loyalty report --format json``: the period in the program's timezone, every figure, the trend, the
    cohorts and the members by tier; with ``store``, that store's figures only."""
    if store is not None:
        return {
            "program": program.name,
            "store": store,
            "period": _period(board, program),
            "figures": [{"section": a, "figure": b, "value": number(v)} for a, b, v in rows(board, program, store)],
        }
    return {
        "program": program.name,
        "period": _period(board, program),
        "figures": [{"section": a, "figure": b, "value": number(v)} for a, b, v in rows(board, program)],
        "trend": plain(board.trend),
        "cohorts": plain(board.cohorts),
        "tiers": board.tiers,
    }


def _period(board: Dashboard, program: Program) -> dict[str, Any]:
    return {
        "label": board.period.label,
        "start": board.period.start.astimezone(program.tz).isoformat(),
        "end": board.period.end.astimezone(program.tz).isoformat(),
        "timezone": program.timezone,
    }


def csv_rows(board: Dashboard, program: Program, store: str | None = None) -> list[list[str]]:
    """``loyalty report --format csv``: a header, then a row a figure."""
    return [["section", "figure", "value"], *([a, b, shown(v)] for a, b, v in rows(board, program, store))]
