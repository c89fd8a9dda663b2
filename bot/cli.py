"""The ``loyalty`` command: run, migrate, report, program (import, export, rollback, history), demo."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from bot.settings import Settings, SettingsError, load_settings
from loyalty.program import ProgramError, load_program

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

app = typer.Typer(
    help="Loyalty Assistant: a Telegram bot that runs your customer loyalty program.",
    no_args_is_help=True,
    add_completion=False,
)
program_app = typer.Typer(
    help="The program as data: numbered revisions in the database, the latest in force in every process within "
    "seconds. The program file is the first revision, and an import and export format.",
    no_args_is_help=True,
)
app.add_typer(program_app, name="program")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        _fail(str(exc))


def _logging(level: str = "INFO", form: str = "text") -> None:
    from bot.logs import setup_logging

    setup_logging(level, form)


ROLES = ("all", "bot", "scheduler")


@app.command()
def run(
    role: str = typer.Option(
        "all",
        "--role",
        help="all: the bot and the scheduler; bot: only answer updates; "
        "scheduler: only send scheduled messages (one per deployment holds the lease).",
    ),
) -> None:
    """Run the bot: long polling, or Telegram's webhook with LOYALTY_WEBHOOK_URL; the HTTP server (API, health,
    metrics) on LOYALTY_HTTP_HOST:LOYALTY_HTTP_PORT. SQLite migrates itself on start."""
    if role not in ROLES:
        _fail(f"--role must be one of: {', '.join(ROLES)}")
    settings = _settings()
    if not settings.bot_token:
        _fail(
            "LOYALTY_BOT_TOKEN is not set. Create a bot with @BotFather and put its token in LOYALTY_BOT_TOKEN "
            "(environment or .env). To try the bot without Telegram, run `loyalty demo`."
        )
    try:
        load_program(settings.program_file)
    except ProgramError as exc:
        _fail(str(exc))
    _logging(form=settings.log_format)
    # Imported late: aiogram takes seconds to import, and a settings mistake should be reported at once.
    from bot.runner import StartupError, build_services, run_role

    async def main() -> None:
        services = await build_services(settings)
        # Broadcasts go out from the process that runs the scheduler: one sender keeps one rate limit.
        services.broadcaster.enabled = role != "bot"
        await run_role(services, role)

    try:
        asyncio.run(main())
    except ProgramError as exc:
        _fail(str(exc))
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        pass


@app.command()
def migrate() -> None:
    """Apply pending database migrations (needed before `run` on PostgreSQL)."""
    from storage.migrate import current_and_head_async, upgrade

    settings = _settings()
    before, head = asyncio.run(current_and_head_async(settings.database_url))
    if before == head:
        typer.echo(f"the database is up to date (migration {head}): nothing to do")
        return
    upgrade(settings.database_url)
    typer.echo(f"migrated the database: {before or 'empty'} → {head}")


@app.command()
def report(
    period: str = typer.Option("30d", "--period", help="7d, 30d, 90d, 12m: any number of days (d) or months (m)."),
    form: str = typer.Option("table", "--format", help="table, json or csv."),
    store: str | None = typer.Option(None, "--store", help="A [[stores]] key: that store's figures only."),
) -> None:
    """The program's figures (as /stats shows them) in the terminal."""
    from bot.report import FORMATS, print_report

    if form not in FORMATS:
        _fail(f"--format must be one of: {', '.join(FORMATS)}")
    settings = _settings()
    try:
        file = load_program(settings.program_file)
    except ProgramError as exc:
        _fail(str(exc))

    async def main() -> None:
        from loyalty.metrics import dashboard, parse_period
        from loyalty.revisions import current_revision
        from storage.clock import utcnow
        from storage.database import make_engine, make_session_factory

        await _check_database(settings)
        engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
        try:
            sessions = make_session_factory(engine)
            async with sessions() as session:
                revision = await current_revision(session)
            # The revision in force (the console may have changed the program since the file was imported).
            program = revision.program if revision is not None else file
            chosen = parse_period(period, utcnow(), program.tz)
            if chosen is None:
                _fail(f"--period {period!r}: use a number of days or months, like 7d, 30d, 90d or 12m")
            if store is not None and program.store(store) is None:
                known = ", ".join(s.key for s in program.stores) or "none: the program lists no [[stores]]"
                _fail(f"--store {store!r}: the stores are {known}")
            board = await dashboard(sessions, program, chosen, program.analytics.effect_days)
        finally:
            await engine.dispose()
        print_report(board, program, form, store)

    asyncio.run(main())


async def _check_database(settings: Settings) -> None:
    """The database exists and is migrated: commands other than `run` never create or migrate one."""
    from storage.database import missing_sqlite_file
    from storage.migrate import current_and_head_async

    if (missing := missing_sqlite_file(settings.database_url)) is not None:
        _fail(f"no database at {missing}: start the bot once (or run `loyalty migrate`), or check LOYALTY_DATABASE_URL")
    current, head = await current_and_head_async(settings.database_url)
    if current != head:
        _fail(f"the database is at migration {current or 'none'}, the code needs {head}: run `loyalty migrate`")


def _with_revisions(settings: Settings, work: Callable[[AsyncSession, int], Awaitable[T]]) -> T:
    """Run ``work`` with a session and the number of the revision in force (on a fresh database the program
    file becomes revision 1 first, as at the bot's start)."""
    from loyalty.revisions import ensure_first_revision
    from storage.clock import utcnow
    from storage.database import make_engine, make_session_factory

    try:
        file = load_program(settings.program_file)
    except ProgramError as exc:
        _fail(str(exc))

    async def main() -> T:
        await _check_database(settings)
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            async with make_session_factory(engine)() as session:
                current = await ensure_first_revision(session, file, utcnow())
                return await work(session, current.number)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except ProgramError as exc:  # a stored revision today's models refuse
        _fail(str(exc))


def _announce(settings: Settings, number: int) -> None:
    """Tell running processes through Redis at once; without Redis they read the number within seconds."""
    if not settings.redis_url:
        return
    from bot.programs import POLL_SECONDS_WITH_REDIS, announce_to

    problem = asyncio.run(announce_to(settings.redis_url, number))
    if problem is not None:
        typer.echo(
            f"warning: cannot tell running processes through Redis at {settings.redis_url} ({problem}): "
            f"they take revision {number} within {POLL_SECONDS_WITH_REDIS:.0f} s",
            err=True,
        )


@program_app.command("import")
def program_import(
    file: Annotated[Path, typer.Argument(help="A program file (TOML), as `program.example.toml`.")],
    note: str | None = typer.Option(None, "--note", help="Why: shown in `loyalty program history`."),
) -> None:
    """Make FILE the program: a new revision, in force in every running process within seconds."""
    from loyalty.revisions import FROM_CLI, StaleRevision, same_program, save_revision
    from storage.clock import utcnow

    settings = _settings()
    try:
        program = load_program(file)
    except ProgramError as exc:
        _fail(str(exc))

    async def work(session: AsyncSession, current: int) -> int | None:
        from loyalty.revisions import get_revision

        in_force = await get_revision(session, current)
        if in_force is not None and same_program(program, in_force.program):
            return None
        try:
            saved = await save_revision(
                session, program, based_on=current, author=FROM_CLI, now=utcnow(), note=_note(note)
            )
        except StaleRevision as exc:
            _fail(str(exc))
        return saved.number

    number = _with_revisions(settings, work)
    if number is None:
        typer.echo(f"nothing to import: {file} says the same as the revision in force")
        return
    typer.echo(f"imported {file} as program revision {number}")
    _announce(settings, number)


@program_app.command("export")
def program_export(
    file: Annotated[Path | None, typer.Argument(help="Where to write it; standard output if not given.")] = None,
) -> None:
    """Write the program in force as a program file (TOML): the keys it gives; comments are not kept."""
    from loyalty.revisions import get_revision, program_toml

    settings = _settings()

    async def work(session: AsyncSession, current: int) -> tuple[int, str]:
        revision = await get_revision(session, current)
        assert revision is not None
        made = f"{revision.created_at:%Y-%m-%d %H:%M} UTC"
        return current, f"# Program revision {current} ({made}), from `loyalty program export`\n" + program_toml(
            revision.program
        )

    number, text = _with_revisions(settings, work)
    if file is None:
        typer.echo(text, nl=False)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"{file}: cannot write: {exc.strerror}")
    typer.echo(f"exported program revision {number} to {file}", err=True)


@program_app.command("rollback")
def program_rollback(
    number: Annotated[int, typer.Argument(help="The revision to bring back (see `loyalty program history`).")],
    note: str | None = typer.Option(None, "--note", help="Why: shown in `loyalty program history`."),
) -> None:
    """Make revision NUMBER's program current again: a new revision with its content."""
    from loyalty.revisions import FROM_CLI, StaleRevision, rollback_to
    from storage.clock import utcnow

    settings = _settings()

    async def work(session: AsyncSession, current: int) -> int:
        if number == current:
            _fail(f"revision {number} is the one in force: nothing to roll back")
        try:
            saved = await rollback_to(
                session, number, based_on=current, author=FROM_CLI, now=utcnow(), note=_note(note)
            )
        except LookupError:
            _fail(f"there is no program revision {number}: the latest is {current}")
        except StaleRevision as exc:
            _fail(str(exc))
        return saved.number

    saved = _with_revisions(settings, work)
    typer.echo(f"program revision {saved} brings back revision {number}")
    _announce(settings, saved)


@program_app.command("history")
def program_history(limit: int = typer.Option(20, "--limit", min=1, help="How many, newest first.")) -> None:
    """The latest revisions: when, by whom, why; the first line is in force."""
    from rich.console import Console
    from rich.table import Table

    from loyalty.revisions import history

    settings = _settings()

    async def work(session: AsyncSession, current: int) -> Table:
        table = Table("revision", "made (UTC)", "by", "note")
        for row in await history(session, limit):
            by = f"{row.author} {row.author_id}" if row.author_id is not None else row.author
            note = row.note or (f"brings back revision {row.restores}" if row.restores is not None else "")
            table.add_row(str(row.number), f"{row.created_at:%Y-%m-%d %H:%M}", by, note)
        return table

    Console().print(_with_revisions(settings, work))


def _note(note: str | None) -> str | None:
    if note is not None and len(note) > 500:
        _fail("--note: at most 500 characters")
    return note or None


@app.command()
def demo(
    script: bool = typer.Option(False, "--script", help="Play a guided tour without input and exit."),
    verbose: bool = typer.Option(False, "--verbose", help="Show the bot's logs."),
    keep: bool = typer.Option(
        False, "--keep", help="Keep the demo's folder (database, saved photos and files) and print where it is."
    ),
) -> None:
    """The whole bot offline: a local Telegram emulator and a chat in this terminal.

    \b
    You are Ann, a member: type as in Telegram. Demo commands:
      /as member|cashier|admin  be Ann, Cass the cashier or Boss the admin
      <number>                  press that button of the last message
      /contact                  share your phone number (Telegram's button)
      /photo <file> <caption>   send a photo from a file (caption optional)
      /clock                    show the demo's time
      /clock +1d                move it on (+2h, +30d, +1d12h): the scheduler
                                sends what fell due (birthday greetings,
                                win-back nudges, surveys, broadcasts)
      /quit                     leave (or Ctrl-D, Ctrl-C)
    A line ending in \\ goes on onto the next line. Photos, charts and
    files the bot sends are saved in the demo's temporary folder, which is
    removed at the end unless --keep is given."""
    from bot.demo import run_demo

    _logging("INFO" if verbose else "ERROR")
    try:
        code = asyncio.run(run_demo(scripted=script, keep=keep))
    except ProgramError as exc:
        _fail(str(exc))
    except (KeyboardInterrupt, EOFError, asyncio.CancelledError):  # Ctrl-C, or a hang-up or kill: cleaned up
        code = 0
    raise typer.Exit(code=code)


if __name__ == "__main__":
    app()
