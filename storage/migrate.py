"""Apply Alembic migrations programmatically (``loyalty migrate`` and start-up on SQLite).

``loyalty run`` does its start-up migration (SQLite) or its check that the database is at the code's migration
(PostgreSQL) in a child process (``upgrade_in_child``, ``current_and_head_in_child``): Alembic, with Mako and
Pygments, is then imported there and gone when it exits, instead of holding about 10 MB of a long-running process
that needed it once. ``loyalty migrate`` and ``loyalty report`` run it in their own process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
ROOT = Path(__file__).resolve().parent.parent
URL_VARIABLE = "LOYALTY_MIGRATE_DATABASE_URL"
"""How the child gets the database URL: in its environment, not its arguments, which ``ps`` shows to anyone."""


class MigrationFailed(RuntimeError):
    """The child process failed; the message is what it did and the last line it wrote (its error)."""


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    # env.py runs its own event loop, so it must not run inside the caller's.
    await asyncio.to_thread(upgrade, url, revision)


async def current_and_head_async(url: str) -> tuple[str | None, str | None]:
    """The database's migration and the code's latest, read over the app's own async driver."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from storage.database import make_engine

    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
    finally:
        await engine.dispose()
    return current, head


async def _in_child(what: str, url: str) -> str:
    """``python -m storage.migrate WHAT`` with the URL in the child's environment; its standard output."""
    env = dict(os.environ)
    env[URL_VARIABLE] = url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "storage.migrate",
        what,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await child.communicate()
    except BaseException:  # cancelled (a signal during start-up): the child must not go on alone
        if child.returncode is None:
            child.kill()
            await child.wait()
        raise
    errors = err.decode(errors="replace").strip()
    if child.returncode != 0:
        log.debug("storage.migrate %s wrote:\n%s", what, errors)
        last = errors.splitlines()[-1] if errors else f"exit code {child.returncode}"
        raise MigrationFailed(f"{'migrating' if what == 'upgrade' else 'reading its migration'} failed: {last}")
    if errors:  # a warning, as it would have been printed in this process
        log.warning("storage.migrate %s: %s", what, errors)
    return out.decode()


async def upgrade_in_child(url: str) -> None:
    """``upgrade_async(url)`` in a child process; ``MigrationFailed`` if it fails."""
    await _in_child("upgrade", url)


async def current_and_head_in_child(url: str) -> tuple[str | None, str | None]:
    """``current_and_head_async(url)`` in a child process; ``MigrationFailed`` if it fails."""
    current, head = json.loads(await _in_child("current", url))
    return current, head


def _main(what: str) -> int:
    """The child: ``upgrade`` or ``current`` (printed as JSON) for the URL in ``URL_VARIABLE``. On an error, its
    traceback, then one line (the last) saying what went wrong, and exit code 1."""
    url = os.environ.get(URL_VARIABLE)
    if not url or what not in ("upgrade", "current"):
        print(f"usage: {URL_VARIABLE}=URL python -m storage.migrate upgrade|current", file=sys.stderr)
        return 2
    try:
        if what == "upgrade":
            upgrade(url)
        else:
            print(json.dumps(asyncio.run(current_and_head_async(url))))
    except Exception as exc:
        traceback.print_exc()
        summary = f"{type(exc).__name__}: {exc}".splitlines()[0]
        print(summary, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1] if len(sys.argv) == 2 else ""))
