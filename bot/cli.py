"""The ``loyalty`` command: run, migrate, report, demo."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import typer

from bot.settings import Settings, SettingsError, load_settings
from loyalty.program import ProgramError, load_program

app = typer.Typer(
    help="Loyalty Assistant: a Telegram bot that runs your customer loyalty program.",
    no_args_is_help=True,
    add_completion=False,
)


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
) -> None:
    """The program's figures (as /stats shows them) in the terminal."""
    from bot.report import FORMATS, print_report

    if form not in FORMATS:
        _fail(f"--format must be one of: {', '.join(FORMATS)}")
    settings = _settings()
    try:
        program = load_program(settings.program_file)
    except ProgramError as exc:
        _fail(str(exc))

    async def main() -> None:
        from loyalty.metrics import dashboard, parse_period
        from storage.clock import utcnow
        from storage.database import make_engine, make_session_factory, missing_sqlite_file
        from storage.migrate import current_and_head_async

        chosen = parse_period(period, utcnow(), program.tz)
        if chosen is None:
            _fail(f"--period {period!r}: use a number of days or months, like 7d, 30d, 90d or 12m")
        if (missing := missing_sqlite_file(settings.database_url)) is not None:
            _fail(
                f"no database at {missing}: start the bot once (or run `loyalty migrate`), "
                "or check LOYALTY_DATABASE_URL"
            )
        current, head = await current_and_head_async(settings.database_url)
        if current != head:
            _fail(f"the database is at migration {current or 'none'}, the code needs {head}: run `loyalty migrate`")
        engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
        try:
            board = await dashboard(make_session_factory(engine), program, chosen, program.analytics.effect_days)
        finally:
            await engine.dispose()
        print_report(board, program, form)

    asyncio.run(main())


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
