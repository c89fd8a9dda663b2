"""The bot as a black box: `loyalty run` long-polls a Bot API server; `loyalty demo --script` tours offline."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from emulator import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    # Port 0: the HTTP server takes a free port, so runs never collide with each other or a real bot.
    return {**clean, "LOYALTY_HTTP_PORT": "0", **extra}


async def _wait_for(tg: FakeTelegram, condition) -> None:
    """Re-check ``condition`` whenever the bot makes a request, for up to 30 seconds."""
    changed = asyncio.Event()
    tg.listeners.append(lambda _call: changed.set())
    async with asyncio.timeout(30):
        while not condition():
            await changed.wait()
            changed.clear()


async def test_run_polls_the_configured_api_and_stops_cleanly(tmp_path: Path) -> None:
    async with FakeTelegram(token="4242:RUN-TEST") as tg:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            cwd=tmp_path,
            env=_env(
                LOYALTY_BOT_TOKEN=tg.token,
                LOYALTY_TELEGRAM_API_URL=tg.base_url,
                LOYALTY_ADMIN_IDS="77",
                LOYALTY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
                PYTHONPATH=str(ROOT),
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await _wait_for(tg, lambda: tg.calls_of("getUpdates"))
            tg.push_update(tg.message_update(tg.user(501, "Ann"), "/start"))
            await _wait_for(tg, lambda: tg.last_text(501) is not None)
            assert "Welcome to Bean There Coffee, Ann!" in (tg.last_text(501) or "")
            # Menus were set at start-up: the admin's private chat carries the admin commands.
            admin_menu = tg.commands_for({"type": "chat", "chat_id": 77}) or []
            assert "adjust" in [command["command"] for command in admin_menu]
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, stderr.decode()
        assert b"Traceback" not in stderr
        tg.assert_clean()
    assert (tmp_path / "run.db").exists(), "SQLite was migrated and used in place"


async def test_demo_script_tours_and_exits_zero() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "demo",
        "--script",
        cwd=ROOT,
        env=_env(COLUMNS="120"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    output = stdout.decode()
    assert process.returncode == 0, output + stderr.decode()
    assert "Welcome to Bean There Coffee, Ann!" in output
    # The example program's promotions depend on the weekday and hour this runs at, so only the shape counts.
    assert re.search(r"\+\d+ points, balance \d+", output)
    assert "Page 1 of 1".lower() in output.lower()
    assert "https://t.me/loyalty_demo_bot?start=ref_" in output
    # The demo's clock moved a day on: the scheduler's survey about the purchase arrives.
    assert "1 day ahead of real time" in output and "How likely are you to recommend Bean There Coffee" in output
    assert "语言已设为简体中文。" in output and "积分" in output.split("语言已设为简体中文。")[1]
    assert "every request the bot made matched the Bot API spec" in output


async def test_run_role_scheduler_sends_due_messages_without_polling(tmp_path: Path) -> None:
    from datetime import timedelta

    from loyalty.members import join
    from loyalty.program import load_program
    from storage.clock import utcnow
    from storage.database import make_engine, make_session_factory
    from storage.migrate import upgrade_async

    url = f"sqlite+aiosqlite:///{tmp_path / 'sched.db'}"
    await upgrade_async(url)
    engine = make_engine(url)
    async with make_session_factory(engine)() as session:  # a member who joined 60 days ago and never came back
        await join(
            session,
            load_program(),
            telegram_id=501,
            chat_id=501,
            first_name="Ann",
            last_name=None,
            username=None,
            language_code="en",
            payload=None,
            now=utcnow() - timedelta(days=60),
        )
    await engine.dispose()
    async with FakeTelegram(token="4243:SCHED-TEST") as tg:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            "--role",
            "scheduler",
            cwd=tmp_path,
            env=_env(
                LOYALTY_BOT_TOKEN=tg.token,
                LOYALTY_TELEGRAM_API_URL=tg.base_url,
                LOYALTY_DATABASE_URL=url,
                PYTHONPATH=str(ROOT),
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await _wait_for(tg, lambda: "We miss you" in (tg.last_text(501) or ""))
        finally:
            process.send_signal(signal.SIGINT)
            _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert b"Traceback" not in stderr, stderr.decode()
        assert not tg.calls_of("getUpdates")
        tg.assert_clean()


async def test_run_refuses_an_unknown_role() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        "--role",
        "cashier",
        cwd=ROOT,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2 and b"--role must be one of: all, bot, scheduler" in stderr


async def _start_failure(tmp_path: Path, **env: str) -> tuple[int, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        cwd=tmp_path,
        env=_env(
            **{
                "LOYALTY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
                "LOYALTY_DATABASE_CONNECT_TIMEOUT": "2",
                "PYTHONPATH": str(ROOT),
                **env,
            }
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, [line for line in stderr.decode().splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("case", "code", "says"),
    [
        ("wrong token", 2, "Telegram refused LOYALTY_BOT_TOKEN"),
        ("no network", 1, "cannot reach the Bot API at http://127.0.0.1:9"),
        ("postgresql not listening", 1, "cannot connect to PostgreSQL at 127.0.0.1:9/test"),
        ("redis not listening", 1, "cannot reach Redis at redis://127.0.0.1:9/0"),
    ],
)
async def test_start_up_failures_are_one_line_with_what_to_check(
    tmp_path: Path, case: str, code: int, says: str
) -> None:
    async with FakeTelegram(token="4242:RUN-TEST") as tg:
        env = {"LOYALTY_BOT_TOKEN": tg.token, "LOYALTY_TELEGRAM_API_URL": tg.base_url}
        if case == "wrong token":
            env["LOYALTY_BOT_TOKEN"] = "4242:SOMEONE-ELSES"
        elif case == "no network":
            env["LOYALTY_TELEGRAM_API_URL"] = "http://127.0.0.1:9"  # the discard port: nothing listens
        elif case == "postgresql not listening":
            env["LOYALTY_DATABASE_URL"] = "postgresql://postgres@127.0.0.1:9/test"
        else:
            env["LOYALTY_REDIS_URL"] = "redis://127.0.0.1:9/0"
        returncode, lines = await _start_failure(tmp_path, **env)
    assert returncode == code, lines
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], lines
    assert not any("Traceback" in line for line in lines), lines
    assert len(lines) <= 3, lines  # the error, and at most the start-up's own log lines before it
