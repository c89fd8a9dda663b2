"""`loyalty demo` driven as a newcomer would: the clock moved on brings the scheduler's messages, files the bot
sends are saved, pop-ups show, contacts, photos and multi-line messages go in, and the folder goes at the end."""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from io import StringIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import segno
from rich.console import Console

from bot.demo import Demo, chat, open_demo, parse_jump

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Demo]:
    for key in [k for k in os.environ if k.startswith("LOYALTY_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    console = Console(file=StringIO(), width=200, color_system=None, force_terminal=False)
    async with open_demo(console, tmp_path) as running:
        yield running


def output(demo: Demo) -> str:
    file = demo.console.file
    assert isinstance(file, StringIO)
    return file.getvalue()


class Since:
    """What the demo printed from now on."""

    def __init__(self, demo: Demo) -> None:
        self.demo, self.start = demo, len(output(demo))

    def __str__(self) -> str:
        return output(self.demo)[self.start :]


async def test_moving_the_clock_brings_the_birthday_greeting(demo: Demo) -> None:
    await demo.handle("/start")
    tz = demo.app.program.tz
    now = demo.clock().astimezone(tz)
    # Noon, two days on: inside the birthday's greeting hours, whenever the test runs.
    noon = (now + timedelta(days=2)).replace(hour=12, minute=0, second=0, microsecond=0)
    hours = math.ceil((noon - now) / timedelta(hours=1))
    await demo.handle("/profile")
    await demo.handle("1")  # 🎂 Set birthday
    before = Since(demo)
    await demo.handle(noon.strftime("%m-%d"))
    assert "Is that right?" in str(before)
    await demo.handle("1")  # ✅ Confirm
    assert "Birthday saved" in str(before) and "Happy birthday" not in str(before)

    await demo.handle("/clock")
    assert "Demo time:" in str(before) and "real time." in str(before)
    jumped = Since(demo)
    await demo.handle(f"/clock +{hours}h")
    printed = str(jumped)
    assert f"Demo time: {noon:%a %Y-%m-%d}" in printed
    assert "ahead of real time" in printed
    assert "🎂 Happy birthday, Ann!" in printed
    assert "Here are 100 bonus points for you." in printed
    demo.tg.assert_clean()


async def test_moving_the_clock_brings_survey_scheduled_broadcast_and_winback(demo: Demo) -> None:
    await demo.handle("/start")
    demo.become("cashier")
    await demo.handle(f"/purchase {await demo.member_code()} 20 coffee")
    demo.become("admin")
    await demo.handle("/broadcast")
    await demo.handle("Spring sale!")
    await demo.handle("3")  # Next: choose members
    await demo.handle("1")  # All members
    await demo.handle("2")  # Schedule
    tz = demo.app.program.tz
    send_at = (demo.clock() + timedelta(hours=3)).astimezone(tz)
    scheduled = Since(demo)
    await demo.handle(f"{send_at:%Y-%m-%d %H:%M}")
    assert "is scheduled for" in str(scheduled) and "Spring sale!" not in str(scheduled)

    demo.become("member")
    day_later = Since(demo)
    await demo.handle("/clock +1d2h")
    assert "How likely are you to recommend Bean There Coffee" in str(day_later)  # the NPS survey
    assert "🤖 Spring sale!" in str(day_later)
    assert "🤖 → Boss: (edited) ✅ Broadcast #1 finished." in str(day_later)

    month_later = Since(demo)
    await demo.handle("/clock +31d")
    assert "👋 We miss you at Bean There Coffee, Ann!" in str(month_later)

    nothing = Since(demo)
    await demo.handle("/clock +1h")
    assert "(nothing was due)" in str(nothing)
    demo.tg.assert_clean()


def test_clock_jumps_are_forward_only() -> None:
    assert parse_jump("+1d") == timedelta(days=1)
    assert parse_jump("+2h") == timedelta(hours=2)
    assert parse_jump("+1d12h") == timedelta(days=1, hours=12)
    assert parse_jump("+90m") == timedelta(minutes=90)
    assert parse_jump("+2w") == timedelta(weeks=2)
    for wrong in ("1d", "-1d", "+0d", "+d", "+1y", "tomorrow", ""):
        assert parse_jump(wrong) is None, wrong


async def test_photos_albums_and_documents_are_saved_and_their_paths_printed(demo: Demo) -> None:
    await demo.handle("/start")
    code = await demo.member_code()
    await demo.handle("/card")
    await demo.handle("/card")  # the second time by the file_id Telegram gave the first
    cards = sorted(demo.files.glob(f"*-card-{code}.png"))
    assert len(cards) == 2 and all(p.read_bytes().startswith(b"\x89PNG") for p in cards)
    assert f"(photo saved to {cards[1]})" in output(demo)

    await demo.handle("/mydata")
    (export,) = demo.files.glob(f"*-my-data-{code}.json")
    assert code in export.read_text() and f"(document saved to {export})" in output(demo)

    demo.become("admin")
    await demo.handle("/stats")  # four charts in one album
    charts = [p for p in demo.files.glob("*.png") if "card" not in p.name]
    assert len(charts) == 4 and all(f"(photo saved to {p})" in output(demo) for p in charts)
    await demo.handle("/export")
    members = next(demo.files.glob("*-members.csv"))
    assert code in members.read_text() and f"(document saved to {members})" in output(demo)
    demo.tg.assert_clean()


async def test_button_pop_ups_are_shown(demo: Demo) -> None:
    await demo.handle("/start")
    await demo.handle("/settings")
    toast = Since(demo)
    await demo.handle("1")  # 🔕 Turn promotions off
    assert "🤖 (notice at the top) Promotions are off." in str(toast)

    demo.become("admin")
    await demo.handle("/broadcast")
    await demo.handle("A draft")
    await demo.handle("/cancel")
    alert = Since(demo)
    await demo.handle("3")  # Next: choose members, of the cancelled draft
    assert "🤖 (pop-up, OK to close) This draft is gone. Start again with /broadcast." in str(alert)


async def test_contact_photo_and_multi_line_messages(demo: Demo, tmp_path: Path) -> None:
    await demo.handle("/start")
    await demo.handle("/profile")
    asked = Since(demo)
    await demo.handle("3")  # 📱 Phone
    (button,) = re.findall(r"keyboard: (.+?) \(/contact\)", str(asked))
    shared = Since(demo)
    await demo.handle(button)  # typing the button's label shares the contact, as pressing it in Telegram would
    assert "(shares contact +15550100)" in str(shared) and "📱 Phone number saved." in str(shared)

    picture = tmp_path / "latte art.png"
    segno.make("latte").save(picture, scale=4)
    await demo.handle("/share")
    await demo.handle("3")  # 📷 A photo
    sent = Since(demo)
    await demo.handle(f"/photo {picture}")
    assert f"(sends the photo {picture})" in str(sent)
    # Staff get the photo to approve: the very bytes Ann sent.
    to_staff = re.search(r"🤖 → Boss: \(photo saved to (\S+)\)", str(sent))
    assert to_staff is not None and _same_file(Path(to_staff.group(1)), picture)

    typed = iter(["/feedback", "The latte was cold,\\", "  and the music loud.", "/quit", "never read"])

    async def read(prompt: str) -> str | None:
        return next(typed)

    await chat(demo, read)
    assert next(typed) == "never read"  # /quit ended the chat
    assert "🆕 New thread #1 from Ann" in output(demo)
    assert "The latte was cold,\n  and the music loud." in output(demo)
    demo.tg.assert_clean()


def _same_file(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


# ------------------------------------------------------------------------------ the folder, as a process


def _env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LOYALTY_")}
    return {**clean, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}


async def _demo(*args: str, stdin: bytes | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "demo",
        *args,
        cwd=ROOT,
        env=_env(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _folder(output: str) -> Path:
    found = re.search(r"(/\S*loyalty-demo-\w+)", output)
    assert found is not None, output
    return Path(found.group(1))


@pytest.fixture
def no_leftovers() -> Iterator[list[Path]]:
    folders: list[Path] = []
    yield folders
    for folder in folders:
        if folder.exists():
            for child in folder.iterdir():
                child.unlink()
            folder.rmdir()


async def test_the_folder_is_removed_at_the_end_of_input_and_kept_with_keep(no_leftovers: list[Path]) -> None:
    process = await _demo()
    stdout, stderr = await asyncio.wait_for(process.communicate(b"/start\n/card\n"), timeout=120)  # then EOF
    assert process.returncode == 0, stdout.decode() + stderr.decode()
    no_leftovers.append(folder := _folder(stdout.decode()))
    assert "(photo saved to" in stdout.decode() and not folder.exists()

    process = await _demo("--keep")
    stdout, stderr = await asyncio.wait_for(process.communicate(b"/start\n/card\n/quit\n"), timeout=120)
    assert process.returncode == 0, stdout.decode() + stderr.decode()
    no_leftovers.append(folder := _folder(stdout.decode()))
    assert f"The demo's files are kept in {folder}" in stdout.decode()
    assert (folder / "demo.db").exists() and list(folder.glob("*-card-*.png"))


async def test_ctrl_c_removes_the_folder_and_exits_at_once(no_leftovers: list[Path]) -> None:
    process = await _demo()
    assert process.stdout is not None and process.stdin is not None
    seen = b""
    async with asyncio.timeout(120):
        while b"/quit" not in seen:  # the help is printed: the chat waits for typing
            seen += await process.stdout.read(4096) or b"!"
            assert not seen.endswith(b"!"), seen
    no_leftovers.append(folder := _folder(seen.decode()))
    assert folder.exists()
    process.send_signal(signal.SIGINT)  # stdin stays open: the reading thread must not hold the exit up
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()
    assert not folder.exists()


async def test_the_demo_serves_the_mini_app_and_what_the_till_does_shows_in_the_chat(demo: Demo) -> None:
    await demo.handle("/start")
    links = demo.app_links()
    assert set(links) == {"member", "cashier", "admin"}

    def authorization(link: str) -> dict[str, str]:
        return {"Authorization": "tma " + parse_qs(urlsplit(link).fragment)["tgWebAppData"][0]}

    page_url = links["member"].split("#", 1)[0]
    async with aiohttp.ClientSession() as http:
        async with http.get(page_url) as page:
            assert page.status == 200 and "telegram-stand-in.js" in await page.text()
        async with http.get(page_url.replace("/app/", "/app/api/home"), headers=authorization(links["member"])) as home:
            assert home.status == 200
            code, points = (await home.json())["code"], (await home.json())["points"]
        since, sent = Since(demo), len(demo.tg.calls)
        purchase = {"member": code, "amount": "25", "key": "demo-key-0001"}
        url = page_url.replace("/app/", "/app/api/till/purchases")
        async with http.post(url, json=purchase, headers=authorization(links["cashier"])) as recorded:
            assert recorded.status == 201, await recorded.text()
            earned = (await recorded.json())["points"]
    for _ in range(250):  # the notice follows the till's answer
        if any(call.params.get("chat_id") == 1001 for call in demo.tg.calls[sent:]):
            break
        await asyncio.sleep(0.02)
    await demo.handle("")  # shows what arrived meanwhile
    assert "Thank you for your purchase" in str(since)
    await demo.handle("/balance")
    assert str(points + earned) in str(since)
