"""Settings, the program file, migrations, command menus and the CLI's start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from bot.services import set_command_menus
from bot.settings import SettingsError, load_settings
from loyalty.program import ProgramError, load_program, parse_program
from storage.database import POOL_OVERFLOW, begin_write, make_engine
from storage.models import StaffRole
from storage.postgres import readers as pg_readers
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness

ROOT = Path(__file__).resolve().parent.parent


def test_settings_parse_ids_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOYALTY_ADMIN_IDS", "1, 2,3")
    monkeypatch.setenv("LOYALTY_DATABASE_URL", "postgresql://postgres@localhost/db")
    settings = load_settings(_env_file=None)
    assert settings.admin_ids == {1, 2, 3}
    assert settings.database_url == "postgresql+asyncpg://postgres@localhost/db"


async def test_the_pool_keeps_the_configured_connections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_POOL_SIZE", "7")
    settings = load_settings(_env_file=None)
    for url in (f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}", "postgresql+asyncpg://postgres@127.0.0.1/test"):
        engine = make_engine(url, pool_size=settings.database_pool_size)
        try:
            assert engine.pool.size() == 7  # type: ignore[attr-defined]
            lender = pg_readers(engine.sync_engine)  # PostgreSQL: single reads have as many of their own
            assert (lender.size if lender else None) == (7 if url.startswith("postgresql") else None)
            assert engine.pool._max_overflow == POOL_OVERFLOW  # type: ignore[attr-defined]
        finally:
            await engine.dispose()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOYALTY_ADMIN_IDS", "1,bob"),
        ("LOYALTY_BOT_TOKEN", "not a token"),
        ("LOYALTY_DATABASE_URL", "mysql://x"),
        ("LOYALTY_PROGRAM_FILE", "/nonexistent.toml"),
        ("LOYALTY_SUPPORT_CHAT_ID", "abc"),
        ("LOYALTY_DATABASE_POOL_SIZE", "0"),
        ("LOYALTY_DATABASE_POOL_SIZE", "many"),
    ],
)
def test_invalid_settings_name_the_setting(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"^{name}: "):
        load_settings(_env_file=None)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, **env},
        timeout=60,
    )


def test_run_without_token_explains_and_exits_2(tmp_path: Path) -> None:
    result = _cli("run", LOYALTY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    assert result.returncode == 2
    assert "LOYALTY_BOT_TOKEN" in result.stderr and "loyalty demo" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = _cli("run", LOYALTY_ADMIN_IDS="x,y", LOYALTY_BOT_TOKEN="1:abc")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: LOYALTY_ADMIN_IDS: expected comma-separated Telegram user ids, e.g. 123,456"
    ]


def test_invalid_program_file_stops_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "program.toml"
    bad.write_text('name = "X"\n[earn]\nrounding = "sideways"\n')
    result = _cli(
        "run",
        LOYALTY_BOT_TOKEN="1:abc",
        LOYALTY_PROGRAM_FILE=str(bad),
        LOYALTY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db",
    )
    assert result.returncode == 2 and "earn.rounding" in result.stderr and "Traceback" not in result.stderr


def test_example_program_loads() -> None:
    program = load_program()
    assert program.name == "Bean There Coffee" and program.currency == "CNY" and program.timezone == "Asia/Shanghai"
    assert program.welcome.bonus == 50 and program.expiry.policy == "days" and program.expiry.days == 365
    assert (ROOT / "program.example.toml").read_text() == (ROOT / "loyalty" / "program.example.toml").read_text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "X"\nbogus = 1', "bogus: unknown key"),
        ('name = "X"\n[earn]\nrounding = "sideways"', "earn.rounding"),
        ('name = "X"\n[earn]\npoints_per_unit = "-1"', "earn.points_per_unit"),
        ('name = "X"\ntimezone = "Mars/Olympus"', "unknown time zone"),
        ('name = "X"\n[expiry]\npolicy = "days"', "days = N"),
        ('name = "X"\ncurrency = "yuan"', "currency"),
        ("name = ", "not valid TOML"),
        ("", "name: Field required"),
    ],
)
def test_invalid_program_files_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        parse_program(text)


def test_earn_rounding_rules() -> None:
    base = 'name = "X"\n[earn]\npoints_per_unit = "1.5"\nminimum_amount = "5"\nrounding = '
    assert parse_program(base + '"down"').earn.points_for(Decimal("9.99")) == 14
    assert parse_program(base + '"nearest"').earn.points_for(Decimal("9.99")) == 15
    assert parse_program(base + '"up"').earn.points_for(Decimal("9.01")) == 14
    assert parse_program(base + '"up"').earn.points_for(Decimal("4.99")) == 0


async def test_admin_commands_appear_only_in_staff_chats(harness: BotHarness) -> None:
    await set_command_menus(harness.services)
    menus = {
        (str(c.params.get("scope")), c.params.get("language_code")): [x["command"] for x in c.params["commands"]]
        for c in harness.tg.calls_of("setMyCommands")
    }
    default = menus[("{'type': 'default'}", None)]
    assert "purchase" not in default and "adjust" not in default and "balance" in default
    assert menus[("{'type': 'default'}", "zh")] == default
    admin = menus[(str({"type": "chat", "chat_id": ADMIN_ID}), None)]
    cashier = menus[(str({"type": "chat", "chat_id": CASHIER_ID}), None)]
    assert "adjust" in admin and "purchase" in admin and "purchase" in cashier and "adjust" not in cashier
    chinese = [c for c in harness.tg.calls_of("setMyCommands") if c.params.get("language_code") == "zh"]
    assert chinese and all(
        any("\u4e00" <= ch <= "\u9fff" for ch in cmd["description"]) for c in chinese for cmd in c.params["commands"]
    )


def test_catalogs_are_complete_and_compiled() -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    import i18n

    assert i18n.problems() == []


def test_expiry_policies() -> None:
    from datetime import UTC, datetime

    earned = datetime(2026, 1, 31, 17, 0, tzinfo=UTC)  # already Feb 1 01:00 in Shanghai
    days = parse_program('name = "X"\n[expiry]\npolicy = "days"\ndays = 30')
    assert days.expires_at(earned) == datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
    monthly = 'name = "X"\ntimezone = "Asia/Shanghai"\n[expiry]\npolicy = "end_of_month"\nmonths = '
    # Earned in February (local time): with months = 2 it lasts to the end of April, i.e. May 1 00:00 local.
    assert parse_program(monthly + "2").expires_at(earned) == datetime(2026, 4, 30, 16, 0, tzinfo=UTC)
    assert parse_program(monthly + "0").expires_at(earned) == datetime(2026, 2, 28, 16, 0, tzinfo=UTC)
    assert parse_program(monthly + "10").expires_at(earned) == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert parse_program(monthly + "11").expires_at(earned) == datetime(2027, 1, 31, 16, 0, tzinfo=UTC)
    assert parse_program(monthly + "12").expires_at(earned) == datetime(2027, 2, 28, 16, 0, tzinfo=UTC)
    assert parse_program('name = "X"').expires_at(earned) is None
    with pytest.raises(ProgramError, match="months = N"):
        parse_program('name = "X"\n[expiry]\npolicy = "end_of_month"')


async def test_an_admin_in_settings_and_a_cashier_in_the_database_is_an_admin_everywhere(harness: BotHarness) -> None:
    """The menu, /help and the permission check read one merged role (loyalty.roles.staff_roles / merge)."""
    async with harness.sessions() as session:
        await begin_write(session)
        session.add(StaffRole(telegram_id=ADMIN_ID, role="cashier"))
        await session.commit()
    await set_command_menus(harness.services)
    menu = next(
        [x["command"] for x in c.params["commands"]]
        for c in harness.tg.calls_of("setMyCommands")
        if c.params.get("scope") == {"type": "chat", "chat_id": ADMIN_ID} and c.params.get("language_code") is None
    )
    boss = harness.user(ADMIN_ID, "Boss")
    help_text = harness.texts(await harness.send(boss, "/help"), ADMIN_ID)[-1]
    assert "adjust" in menu and "/adjust" in help_text and "/stats" in help_text
    calls = await harness.send(boss, "/adjust @nobody +5 gift")
    assert harness.texts(calls, ADMIN_ID) == ["No member found for @nobody."]  # allowed, not refused


async def test_id_tells_anyone_their_id_and_in_a_group_the_groups(harness: BotHarness) -> None:
    stranger = harness.user(4242, "Newcomer")
    [private] = harness.texts(await harness.send(stranger, "/id"), 4242)
    assert private == "Your Telegram id: <code>4242</code>"
    group = {"id": -1001234567890, "type": "supergroup", "title": "Staff"}
    update = harness.tg.message_update(stranger, "/id@loyalty_test_bot", chat=group)
    [in_group] = harness.texts(await harness.feed(update), -1001234567890)
    assert "Your Telegram id: <code>4242</code>" in in_group
    assert "This group's id: <code>-1001234567890</code>" in in_group


def test_env_example_names_every_setting_with_its_default() -> None:
    """A newcomer copies .env.example: it must not miss a setting, nor keep a default the code no longer has."""
    from bot.settings import Settings

    text = (Path(__file__).resolve().parent.parent / ".env.example").read_text()
    lines = {line.lstrip("# ").split("=", 1)[0]: line.split("=", 1)[1] for line in text.splitlines() if "=" in line}
    for name, field in Settings.model_fields.items():
        key = f"LOYALTY_{name.upper()}"
        assert key in lines, f"{key} is missing from .env.example"
        default = field.default
        if isinstance(default, bool):
            expected = str(default).lower()
        elif isinstance(default, float):
            expected = f"{default:g}"
        elif isinstance(default, int | str):
            expected = str(default)
        else:  # None or empty: the example shows a placeholder or nothing
            continue
        assert lines[key] == expected, f"{key}: .env.example says {lines[key]!r}, the code {expected!r}"
