"""Fast paths that lean on a library's private internals, and what happens when they cannot be taken.

Each such path has a plain way to do the same work, which the bot takes if the library changed under it (the
hook is gone) or the fast path failed. That must never break the bot, but it must not go unnoticed either: the
plain ways are several times slower, which is why the fast paths exist. So every fallback taken is counted in
``loyalty_fast_path_fallbacks_total`` (by ``path``) and logged. ``tests/test_internals.py`` fails when a hook
disappears, and ``pyproject.toml`` bounds each of these libraries to the versions tested.
"""

from __future__ import annotations

import logging
import time
from importlib import metadata

from prometheus_client import Counter

log = logging.getLogger(__name__)

# Each path counts once for each time its plain way runs: a connection, a stop, a request, a batch, a read.
SQLITE_INLINE_TX = "sqlite_inline_tx"
"""aiosqlite's ``Connection._tx`` (``storage.sqlite.InlineConnection``): else a connection with a worker thread."""
APSCHEDULER_PENDING = "apscheduler_pending"
"""APScheduler's ``AsyncIOExecutor._pending_futures`` (``scheduler.service.Scheduler.stop``): else one turn of
the loop, after which every run begun is among the scheduler's own."""
AIOGRAM_JSON = "aiogram_json"
"""aiogram's ``prepare_value(_dumps_json=False)`` (``bot.session.JsonSession``): else the request goes as a form."""
PG_READ_BATCH = "pg_read_batch"
"""Reads of one statement sent as one rewritten statement (``storage.postgres.Readers``): else one by one."""
PREPARED_READ = "prepared_read"
"""A read on the driver's connection (``storage.database.PreparedRead``): else through SQLAlchemy."""

AIOGRAM_LAZY_MODELS = "aiogram_lazy_models"
"""pydantic's ``model_rebuild(_types_namespace=...)`` (``bot.lazymodels``): else aiogram's ~450 types are built at
import, as aiogram does (about 75 MB more memory). Counted once, at start-up."""

PATHS = (SQLITE_INLINE_TX, APSCHEDULER_PENDING, AIOGRAM_JSON, PG_READ_BATCH, PREPARED_READ, AIOGRAM_LAZY_MODELS)

FALLBACKS = Counter(
    "loyalty_fast_path_fallbacks_total",
    "Times a fast path built on a library's internals was not taken and the plain way ran instead, by path",
    ["path"],
)
for _path in PATHS:  # every series exists from the start, so an alert can compare against 0
    FALLBACKS.labels(_path)

LOG_EVERY = 60.0
"""Seconds between two log lines for one path: a fallback on every read must not flood the log."""

_last_logged: dict[str, float] = {}
_unlogged: dict[str, int] = {}


def took_fallback(path: str, reason: str | BaseException) -> None:
    """Count a fallback taken on ``path`` and log why (the first time, then at most once every ``LOG_EVERY``)."""
    FALLBACKS.labels(path).inc()
    now = time.monotonic()
    last = _last_logged.get(path)
    if last is not None and now - last < LOG_EVERY:
        _unlogged[path] = _unlogged.get(path, 0) + 1
        return
    _last_logged[path] = now
    since = _unlogged.pop(path, 0)
    why = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else reason
    log.warning(
        "fast path %s not taken, the plain way ran instead (%s)%s",
        path,
        why,
        f"; {since} more since the last report" if since else "",
        exc_info=reason if isinstance(reason, BaseException) else None,
    )


def library(distribution: str) -> str:
    """The distribution and its installed version, for a reason given to ``took_fallback``."""
    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def reset_log_limit() -> None:
    """Forget what was logged, so the next fallback on every path logs again (for tests)."""
    _last_logged.clear()
    _unlogged.clear()
