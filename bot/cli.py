"""The ``loyalty`` command: run, migrate, demo."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import NoReturn

import typer

from bot.settings import Settings, SettingsError, load_settings
from loyalty.program import ProgramError, load_program

app = typer.Typer(help="Loyalty Assistant: a Telegram bot that runs your customer loyalty program.",
                  no_args_is_help=True, add_completion=False)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        _fail(str(exc))


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


ROLES = ("all", "bot", "scheduler")


@app.command()
def run(
    role: str = typer.Option("all", "--role", help="all: the bot and the scheduler; bot: only answer updates; "
                             "scheduler: only send scheduled messages (one per deployment holds the lease)."),
) -> None:
    """Run the bot with long polling (SQLite migrates itself on start)."""
    if role not in ROLES:
        _fail(f"--role must be one of: {', '.join(ROLES)}")
    settings = _settings()
    if not settings.bot_token:
        _fail("LOYALTY_BOT_TOKEN is not set. Create a bot with @BotFather and put its token in LOYALTY_BOT_TOKEN "
              "(environment or .env). To try the bot without Telegram, run `loyalty demo`.")
    try:
        load_program(settings.program_file)
    except ProgramError as exc:
        _fail(str(exc))
    _logging()
    # Imported late: aiogram takes seconds to import, and a settings mistake should be reported at once.
    from bot.runner import StartupError, build_app, run_polling, run_scheduler

    async def main() -> None:
        application = await build_app(settings)
        # Broadcasts go out from the process that runs the scheduler: one sender keeps one rate limit.
        application.dispatcher["broadcaster"].enabled = role != "bot"
        if role == "scheduler":
            await run_scheduler(application)
        else:
            await run_polling(application, with_scheduler=role == "all")

    try:
        asyncio.run(main())
    except (ProgramError, StartupError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        pass


@app.command()
def migrate() -> None:
    """Apply pending database migrations (needed before `run` on PostgreSQL)."""
    from storage.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    typer.echo("database is up to date")


@app.command()
def demo(
    script: bool = typer.Option(False, "--script", help="Play a guided tour without input and exit."),
    verbose: bool = typer.Option(False, "--verbose", help="Show the bot's logs."),
) -> None:
    """The whole bot offline: a local Telegram emulator and a chat in this terminal."""
    from bot.demo import run_demo

    _logging("INFO" if verbose else "ERROR")
    try:
        code = asyncio.run(run_demo(scripted=script))
    except ProgramError as exc:
        _fail(str(exc))
    except (KeyboardInterrupt, EOFError):
        code = 0
    raise typer.Exit(code=code)


if __name__ == "__main__":
    app()
