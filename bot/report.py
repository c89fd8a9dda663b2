"""``loyalty report``: the /stats figures in the terminal, as Rich tables, JSON or CSV."""

from __future__ import annotations

import csv
import json
import sys

from rich.console import Console
from rich.table import Table

from loyalty.metrics import Dashboard
from loyalty.program import Program
from loyalty.report import Share, csv_rows, document, rows, shown

__all__ = ["FORMATS", "Share", "print_report", "rows"]

FORMATS = ("table", "json", "csv")


def print_report(board: Dashboard, program: Program, form: str, store: str | None = None) -> None:
    if form == "json":
        json.dump(document(board, program, store), sys.stdout, ensure_ascii=False, indent=2, default=str)
        sys.stdout.write("\n")
    elif form == "csv":
        csv.writer(sys.stdout).writerows(csv_rows(board, program, store))
    else:
        period = board.period
        start, end = period.start.astimezone(program.tz), period.end.astimezone(program.tz)
        table = Table(title=f"{program.name} · {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} ({program.timezone})")
        for column in ("section", "figure"):
            table.add_column(column)
        table.add_column("value", justify="right")
        last = ""
        for section, figure, value in rows(board, program, store):
            table.add_row(section if section != last else "", figure, shown(value))
            last = section
        Console().print(table)
