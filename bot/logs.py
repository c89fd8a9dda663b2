"""Logging set-up: human-readable lines, or one JSON object a line for log collectors."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else was passed through ``extra=`` and belongs in the JSON object.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, exception and extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        # default=str: an extra that JSON cannot hold is still logged rather than losing the whole line.
        return json.dumps(line, ensure_ascii=False, default=str)


def setup_logging(level: str = "INFO", form: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic tells of every plugin and migration step at INFO: a wall of lines at each start, none of them news.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # aiogram writes a line for every update handled ("Update id=… is handled. Duration …"): at 200 updates a
    # second that was a tenth of a worker's CPU and millions of lines a day saying nothing the metrics do not
    # (loyalty_updates_total, loyalty_update_seconds). Its errors still come through.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
