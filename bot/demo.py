"""``loyalty demo``: the whole bot offline, against the local Bot API emulator, chatting in the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bot.runner import build_services, run_polling
from bot.services import Services
from bot.settings import load_settings
from emulator import Call, FakeTelegram, html_to_plain
from loyalty.members import get_by_telegram_id

SETTLE_SECONDS = 0.4
REPLY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Persona:
    key: str
    user_id: int
    first_name: str
    username: str
    language_code: str


MEMBER = Persona("member", 1001, "Ann", "ann_demo", "en")
CASHIER = Persona("cashier", 9002, "Cass", "cass_demo", "en")
ADMIN = Persona("admin", 9001, "Boss", "boss_demo", "en")
PERSONAS = {p.key: p for p in (MEMBER, CASHIER, ADMIN)}

HELP = """Type messages as the current user. Demo commands:
  /as member | /as cashier | /as admin   switch who you are (Ann, Cass the cashier, Boss the admin)
  <number>                               press that inline button of the last message
  /quit                                  leave"""


class Demo:
    def __init__(self, tg: FakeTelegram, app: Services, console: Console, files: Path) -> None:
        self.tg, self.app, self.console, self.files = tg, app, console, files
        self.me = MEMBER
        self.users = {
            p.user_id: tg.user(p.user_id, p.first_name, p.username, p.language_code) for p in PERSONAS.values()
        }

    @property
    def user(self) -> dict[str, Any]:
        return self.users[self.me.user_id]

    async def say(self, text: str) -> None:
        self.console.print(f"[bold cyan]{self.me.first_name} ›[/] {text}", highlight=False)
        await self._deliver(self.tg.message_update(self.user, text))

    async def press(self, number: int) -> None:
        message, buttons = self._last_buttons()
        if message is None or not 1 <= number <= len(buttons):
            self.console.print("[yellow]No such button.[/]")
            return
        button = buttons[number - 1]
        self.console.print(f"[bold cyan]{self.me.first_name} ›[/] (presses “{button['text']}”)", highlight=False)
        if "callback_data" in button:
            await self._deliver(self.tg.callback_update(self.user, message, button["callback_data"]))
        else:
            self.console.print(f"[dim](opens {button.get('url') or 'a link'})[/]")

    def _last_buttons(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        for message in reversed(self.tg.messages(self.me.user_id)):
            rows = message.get("reply_markup", {}).get("inline_keyboard")
            if rows:
                return message, [button for row in rows for button in row]
        return None, []

    async def _deliver(self, update: dict[str, Any]) -> None:
        """Queue the update for the bot's long polling and print what the bot sends until it goes quiet."""
        start = len(self.tg.calls)
        self.tg.push_update(update)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLY_TIMEOUT
        seen, quiet_since = start, loop.time()
        while loop.time() < deadline:
            await asyncio.sleep(0.05)
            if len(self.tg.calls) != seen:
                seen, quiet_since = len(self.tg.calls), loop.time()
            elif seen > start and loop.time() - quiet_since > SETTLE_SECONDS:
                break
        for call in self.tg.calls[start:]:
            self._show(call)

    def _show(self, call: Call) -> None:
        if call.method in ("getUpdates", "answerCallbackQuery", "setMyCommands", "editMessageReplyMarkup"):
            return
        if not call.ok:
            self.console.print(f"[red]✗ {call.method} refused: {(call.response or {}).get('description')}[/]")
            return
        chat = call.params.get("chat_id")
        who = next((p.first_name for p in PERSONAS.values() if p.user_id == chat), str(chat))
        prefix = "🤖" if chat == self.me.user_id else f"🤖 → {who}:"
        text = call.params.get("text") or call.params.get("caption") or ""
        if call.method == "sendPhoto" and call.files:
            name, data = next(iter(call.files.items()))
            path = self.files / f"{name}.png"
            path.write_bytes(data)
            self.console.print(f"{prefix} (photo saved to {path})", markup=False, highlight=False)
            prefix = "  "
        if text:
            label = "(edited) " if call.method.startswith("edit") else ""
            self.console.print(f"{prefix} {label}{html_to_plain(text)}", markup=False, highlight=False)
        markup = call.params.get("reply_markup") or {}
        if "inline_keyboard" in markup:
            buttons = [button["text"] for row in markup["inline_keyboard"] for button in row]
            self.console.print(
                "   " + "  ".join(f"[{i}] {text}" for i, text in enumerate(buttons, 1)), markup=False, highlight=False
            )
        elif "keyboard" in markup:
            labels = [button["text"] for row in markup["keyboard"] for button in row]
            self.console.print("   keyboard: " + " | ".join(labels), markup=False, highlight=False)

    def become(self, key: str) -> None:
        if key not in PERSONAS:
            self.console.print(f"[yellow]Choose one of: {', '.join(PERSONAS)}[/]")
            return
        self.me = PERSONAS[key]
        self.console.print(f"[green]You are now {self.me.first_name} ({self.me.key}).[/]")

    async def member_code(self) -> str:
        async with self.app.sessions() as session:
            member = await get_by_telegram_id(session, MEMBER.user_id)
        assert member is not None, "the member has not joined"
        return member.code


async def tour(demo: Demo) -> None:
    console = demo.console
    steps: list[tuple[str, str | None, str | int]] = [
        ("Ann joins the program", "member", "/start"),
        ("Ann shows her member card at the till", "member", "/card"),
        ("Boss, the admin, records Ann's purchase of ¥36.50 with her member code", "admin", "PURCHASE"),
        ("Ann checks her balance", "member", "/balance"),
        ("...and her points history", "member", "/history"),
        ("Ann gets her invitation link: her friend's first purchase will earn her points", "member", "/refer"),
        ("Ann switches to Simplified Chinese", "member", "/language"),
        (" ", None, 2),
        ("Every reply now follows her choice", "member", "/balance"),
    ]
    for narration, persona, action in steps:
        if narration.strip():
            console.rule(f"[bold]{narration}")
        if persona and persona != demo.me.key:
            demo.become(persona)
        if isinstance(action, int):
            await demo.press(action)
        elif action == "PURCHASE":
            await demo.say(f"/purchase {await demo.member_code()} 36.50 coffee")
        else:
            await demo.say(action)


async def chat(demo: Demo) -> None:
    demo.console.print(HELP)
    while True:
        try:
            line = (await asyncio.to_thread(input, f"{demo.me.first_name} › ")).strip()
        except EOFError:
            return
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return
        if line.startswith("/as"):
            demo.become(line[3:].strip().lower())
        elif line.isdecimal() and len(line) < 3:
            await demo.press(int(line))
        else:
            # The echo is only for the scripted tour; here the terminal already shows what was typed.
            await demo._deliver(demo.tg.message_update(demo.user, line))


async def run_demo(*, scripted: bool) -> int:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="loyalty-demo-"))
    async with FakeTelegram(token="7000000001:DEMO-TOKEN", bot_username="loyalty_demo_bot") as tg:
        settings = load_settings().model_copy(
            update={
                "bot_token": tg.token,
                "telegram_api_url": tg.base_url,
                "database_url": f"sqlite+aiosqlite:///{workdir / 'demo.db'}",
                "admin_ids": frozenset({ADMIN.user_id}),
                "cashier_ids": frozenset({CASHIER.user_id}),
            }
        )
        app = await build_services(settings)
        console.print(
            f"[bold]Loyalty Assistant demo[/] — {app.program.name}, offline against a local Telegram "
            f"emulator at {tg.base_url}. Database: {workdir / 'demo.db'}"
        )
        polling = asyncio.create_task(run_polling(app, handle_signals=False))
        demo = Demo(tg, app, console, workdir)
        try:
            await (tour(demo) if scripted else chat(demo))
        finally:
            await app.dispatcher.stop_polling()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
    if tg.spec_errors:
        console.print(f"[red]The bot sent {len(tg.spec_errors)} request(s) that break the Bot API spec:[/]")
        for error in tg.spec_errors:
            console.print(f"  {error}", markup=False)
        return 1
    console.print("[green]Demo finished; every request the bot made matched the Bot API spec.[/]")
    return 0
