"""``loyalty demo``: the whole bot offline, against the local Bot API emulator, chatting in the terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from rich.console import Console

from bot.runner import build_services, run_polling
from bot.services import Services
from bot.settings import load_settings
from emulator import Call, FakeTelegram
from emulator.webapp import init_data, launch_url
from loyalty.members import get_by_telegram_id
from scheduler.jobs import make_scheduler
from scheduler.service import Scheduler
from storage.clock import utcnow
from web.server import make_http_app, start_http

STAND_IN = "/app/static/telegram-stand-in.js"  # served by the app itself; the demo's only, never production's
REPLY_TIMEOUT = 30.0  # drawing /stats charts takes a few seconds on a slow machine
QUIET_SECONDS = 0.3
"""After the update is handled: how long without a request before the answer counts as complete (a handler may
leave work running, such as a broadcast)."""
WATCH_SECONDS = 0.5

# Requests that show nothing a person would see in the chat.
_SILENT = frozenset({"getUpdates", "getMe", "setMyCommands", "deleteWebhook", "sendChatAction", "getChat", "getFile"})
# The field of a sent Message that holds its file, by kind.
_FILE_KINDS = ("photo", "document", "video", "animation", "audio", "voice", "video_note", "sticker")
_EXTENSIONS = {"photo": ".png", "video": ".mp4", "animation": ".mp4", "voice": ".ogg", "video_note": ".mp4"}
_JUMP = re.compile(r"\+((?:\d+[wdhm])+)")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class Persona:
    key: str
    user_id: int
    first_name: str
    username: str
    language_code: str
    phone: str


MEMBER = Persona("member", 1001, "Ann", "ann_demo", "en", "+15550100")
CASHIER = Persona("cashier", 9002, "Cass", "cass_demo", "en", "+15550101")
ADMIN = Persona("admin", 9001, "Boss", "boss_demo", "en", "+15550102")
PERSONAS = {p.key: p for p in (MEMBER, CASHIER, ADMIN)}

HELP = """Type messages as the current user. A line ending in \\ goes on onto the next line (one message).
Demo commands:
  /as member | /as cashier | /as admin   switch who you are (Ann, Cass the cashier, Boss the admin)
  <number>                               press that inline button of the last message
  /contact                               share your phone number (as Telegram's "share contact" button does)
  /photo <file> [caption]                send a photo from a file (for /share or /feedback)
  /clock                                 show the demo's time
  /clock +1d | +2h | +30d | +1d12h       move the clock forward; the scheduler then sends what fell due
                                         (birthday greetings, win-back nudges, surveys, scheduled broadcasts)
  /app                                   links that open the Mini App in your browser as Ann, Cass or Boss
  (empty line)                           show what arrived meanwhile
  /quit                                  leave (the demo's folder is removed unless you started with --keep)"""


class DemoClock:
    """The demo's "now": the real time, plus however far ``/clock`` has moved it on."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.ahead


def parse_jump(text: str) -> timedelta | None:
    """``+1d``, ``+2h``, ``+30d``, ``+1d12h``, ``+90m``, ``+2w``: how far to move the clock; None if it is not one."""
    matched = _JUMP.fullmatch(text.strip().lower())
    if matched is None:
        return None
    steps = re.findall(r"(\d+)([wdhm])", matched.group(1))
    jump = timedelta(**{_UNITS[unit]: 0 for unit in _UNITS})
    for amount, unit in steps:
        jump += timedelta(**{_UNITS[unit]: int(amount)})
    return jump if jump > timedelta() else None


def _photo_file(rest: str) -> tuple[Path, bytes, str] | None:
    """The file and caption of ``/photo <file> [caption]``; None without a readable file."""
    # The whole rest may be a path with spaces; otherwise the first word is the path and the rest the caption.
    whole = Path(rest).expanduser()
    if rest and whole.is_file():
        path, caption = whole, ""
    else:
        first, _, caption = rest.partition(" ")
        path = Path(first).expanduser()
    if not rest or not path.is_file():
        return None
    try:
        return path, path.read_bytes(), caption.strip()
    except OSError:
        return None


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in ((days, "day"), (hours, "hour"), (minutes, "minute"))]
    return " ".join(part for part, n in zip(parts, (days, hours, minutes), strict=True) if n) or "0 minutes"


class Handled(BaseMiddleware):
    """Which updates the dispatcher has finished with: the demo waits for the whole answer (charts take seconds to
    draw) instead of guessing it complete from a pause between requests."""

    def __init__(self) -> None:
        self.done: set[int] = set()
        self._changed = asyncio.Event()

    async def wait_for(self, update_id: int) -> None:
        while update_id not in self.done:
            await self._changed.wait()
            self._changed.clear()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            return await handler(event, data)
        finally:
            if isinstance(event, Update):
                self.done.add(event.update_id)
                self._changed.set()


class Demo:
    def __init__(
        self,
        tg: FakeTelegram,
        app: Services,
        console: Console,
        files: Path,
        clock: DemoClock,
        scheduler: Scheduler,
        handled: Handled,
    ) -> None:
        self.tg, self.app, self.console, self.files = tg, app, console, files
        self.clock, self.scheduler, self.handled = clock, scheduler, handled
        self.me = MEMBER
        self.users = {
            p.user_id: tg.user(p.user_id, p.first_name, p.username, p.language_code) for p in PERSONAS.values()
        }
        self.shown = 0  # calls up to here are printed
        self.saved = 0  # files saved, to number them in the order they arrived
        self.names: dict[str, str] = {}  # file_id -> the name it was uploaded with, for when it is sent again by id

    @property
    def user(self) -> dict[str, Any]:
        return self.users[self.me.user_id]

    # ------------------------------------------------------------------------------ input

    async def handle(self, line: str) -> bool:
        """One message or demo command, as typed; False when the demo should end."""
        text = line.strip()
        command, _, rest = text.partition(" ")
        rest = rest.strip()
        if not text:
            self.flush()
        elif command in ("/quit", "/exit"):
            return False
        elif command == "/as":
            self.become(rest.lower())
        elif command == "/clock":
            await self.move_clock(rest)
        elif command == "/app":
            self.show_app_links()
        elif command == "/photo":
            await self.send_photo(rest)
        elif command == "/contact":
            await self.share_contact()
        elif text.isdecimal() and len(text) < 3:
            await self.press(int(text))
        elif text in self._contact_buttons():
            # Telegram's request_contact button sends the contact, not its label.
            await self.share_contact()
        else:
            await self._deliver(self.tg.message_update(self.user, text))
        return True

    async def say(self, line: str) -> bool:
        """``handle`` with the line echoed: the scripted tour's typing."""
        self.console.print(f"[bold cyan]{self.me.first_name} ›[/] {line}", highlight=False)
        return await self.handle(line)

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
            self.console.print(
                f"[dim](opens {button.get('url') or button.get('web_app', {}).get('url') or 'a link'})[/]"
            )

    async def share_contact(self) -> None:
        contact = {"phone_number": self.me.phone, "first_name": self.me.first_name, "user_id": self.me.user_id}
        self.console.print(f"[bold cyan]{self.me.first_name} ›[/] (shares contact {self.me.phone})", highlight=False)
        await self._deliver(self.tg.message_update(self.user, contact=contact))

    async def send_photo(self, rest: str) -> None:
        found = _photo_file(rest)
        if found is None:
            self.console.print("[yellow]Usage: /photo <file> [caption] (a PNG or JPEG file on this computer)[/]")
            return
        path, data, caption = found
        extra: dict[str, Any] = {"photo": self.tg.photo(data)}
        if caption:
            extra["caption"] = caption
        self.console.print(f"[bold cyan]{self.me.first_name} ›[/] (sends the photo {path})", highlight=False)
        await self._deliver(self.tg.message_update(self.user, **extra))

    def become(self, key: str) -> None:
        if key not in PERSONAS:
            self.console.print(f"[yellow]Choose one of: {', '.join(PERSONAS)}[/]")
            return
        self.me = PERSONAS[key]
        self.console.print(f"[green]You are now {self.me.first_name} ({self.me.key}).[/]")

    def _last_buttons(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        for message in reversed(self.tg.messages(self.me.user_id)):
            rows = message.get("reply_markup", {}).get("inline_keyboard")
            if rows:
                return message, [button for row in rows for button in row]
        return None, []

    def _contact_buttons(self) -> set[str]:
        keyboard = self.tg.reply_keyboard(self.me.user_id) or {}
        return {b["text"] for row in keyboard.get("keyboard", []) for b in row if b.get("request_contact")}

    # ------------------------------------------------------------------------------ time

    def time_line(self) -> str:
        tz = self.app.program.tz
        local = self.clock().astimezone(tz)
        ahead = f"{_span(self.clock.ahead)} ahead of real time" if self.clock.ahead else "real time"
        return f"Demo time: {local:%a %Y-%m-%d %H:%M} ({self.app.program.timezone}), {ahead}."

    def app_links(self) -> dict[str, str]:
        """The Mini App as each persona opens it, signed now by the demo clock (a /clock jump ages old links)."""
        url = self.app.settings.webapp_url
        assert url is not None
        links = {}
        for persona in PERSONAS.values():
            user = {
                "id": persona.user_id,
                "first_name": persona.first_name,
                "username": persona.username,
                "language_code": persona.language_code,
            }
            signed = init_data(self.tg.token, user, auth_date=int(self.clock().timestamp()))
            links[persona.key] = launch_url(url, signed)
        return links

    def show_app_links(self) -> None:
        self.console.print(
            "The Mini App, in any browser on this computer (Telegram's scanner asks for the text to scan; what you do "
            "there shows up in this chat, and the other way round):",
            highlight=False,
        )
        for key, link in self.app_links().items():
            name = PERSONAS[key].first_name
            self.console.print(f"  {name} ({key}): {link}", markup=False, highlight=False, soft_wrap=True)

    async def move_clock(self, arg: str) -> None:
        if not arg:
            self.console.print(self.time_line(), highlight=False)
            return
        jump = parse_jump(arg)
        if jump is None:
            self.console.print("[yellow]Move the clock forward like this: /clock +1d, +2h, +30d or +1d12h.[/]")
            return
        self.flush()
        self.clock.ahead += jump
        self.console.print(f"⏩ {self.time_line()} The scheduler runs its jobs now.", highlight=False)
        start = self._activity()
        # Each job once, at the new time: what fell due in the skipped time goes now, not at its next interval.
        for job in self.scheduler.jobs:
            await self.scheduler.run_job(job)
        await self._settle(None)
        if self._activity() == start:
            self.console.print("[dim](nothing was due)[/]")

    # ------------------------------------------------------------------------------ output

    async def _deliver(self, update: dict[str, Any]) -> None:
        """Queue the update for the bot's long polling and print what the bot sends while handling it."""
        self.flush()
        pushed = self.tg.push_update(update)
        await self._settle(pushed["update_id"])

    def _activity(self) -> int:
        return sum(1 for call in self.tg.calls if call.method != "getUpdates")

    async def _settle(self, update_id: int | None) -> None:
        """Wait until the update is handled, a broadcast it started is sent and the bot goes quiet; then print."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLY_TIMEOUT
        if update_id is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPLY_TIMEOUT):
                    await self.handled.wait_for(update_id)
        sending = self.app.broadcaster.task
        if sending is not None and not sending.done():
            await asyncio.wait({sending}, timeout=max(0.0, deadline - loop.time()))
        seen, quiet_since = self._activity(), loop.time()
        while loop.time() < deadline and loop.time() - quiet_since < QUIET_SECONDS:
            await asyncio.sleep(0.05)
            if self._activity() != seen:
                seen, quiet_since = self._activity(), loop.time()
        self.flush()

    def pending(self) -> bool:
        return any(self._visible(call) for call in self.tg.calls[self.shown :])

    def flush(self) -> None:
        """Print the requests not printed yet, in order, up to one still being answered."""
        calls = self.tg.calls
        while self.shown < len(calls):
            call = calls[self.shown]
            if self._visible(call) and not call.response:
                break  # the emulator records a request before answering it; its turn comes at the next flush
            self.shown += 1
            self._show(call)

    def _visible(self, call: Call) -> bool:
        return call.method not in _SILENT

    def _show(self, call: Call) -> None:
        if not self._visible(call):
            return
        if call.method == "answerCallbackQuery":
            if call.params.get("text"):
                kind = "pop-up, OK to close" if call.params.get("show_alert") else "notice at the top"
                self.console.print(f"🤖 ({kind}) {call.params['text']}", markup=False, highlight=False)
            return
        if not call.ok:
            self.console.print(f"[red]✗ {call.method} refused: {(call.response or {}).get('description')}[/]")
            return
        chat = call.params.get("chat_id")
        who = next((p.first_name for p in PERSONAS.values() if p.user_id == chat), str(chat))
        prefix = "🤖" if chat == self.me.user_id else f"🤖 → {who}:"
        if call.method == "editMessageReplyMarkup":
            return  # a keyboard taken away or changed: the new one shows when it matters
        shown = False
        for message in self._messages_of(call):
            for kind, path in self._save_files(call, message):
                self.console.print(f"{prefix} ({kind} saved to {path})", markup=False, highlight=False)
                prefix, shown = "  ", True
            # The emulator keeps messages as Telegram shows them: HTML already turned into plain text.
            text = message.get("text") or message.get("caption")
            if text:
                label = "(edited) " if call.method.startswith("edit") else ""
                self.console.print(f"{prefix} {label}{text}", markup=False, highlight=False)
                prefix, shown = "  ", True
        if not shown:
            what = re.sub(r"(?<!^)([A-Z])", r" \1", call.method.removeprefix("send")).lower()
            self.console.print(f"{prefix} ({what})", markup=False, highlight=False)
        self._show_keyboard(call.params.get("reply_markup") or {})

    def _show_keyboard(self, markup: dict[str, Any]) -> None:
        if "inline_keyboard" in markup:
            buttons = [button["text"] for row in markup["inline_keyboard"] for button in row]
            self.console.print(
                "   " + "  ".join(f"[{i}] {text}" for i, text in enumerate(buttons, 1)), markup=False, highlight=False
            )
        elif "keyboard" in markup:
            labels = [
                button["text"] + (" (/contact)" if button.get("request_contact") else "")
                for row in markup["keyboard"]
                for button in row
            ]
            self.console.print("   keyboard: " + " | ".join(labels), markup=False, highlight=False)

    def _messages_of(self, call: Call) -> list[dict[str, Any]]:
        """The messages a sending request made, as the chat now holds them."""
        result = call.result
        if isinstance(result, list):
            return [m for m in result if isinstance(m, dict)]
        if isinstance(result, dict) and "chat" in result:
            return [result]
        if isinstance(result, dict) and "message_id" in result and call.chat_id is not None:  # copyMessage
            copied = self.tg.find_message(call.chat_id, result["message_id"])
            return [copied] if copied is not None else []
        return []

    def _save_files(self, call: Call, message: dict[str, Any]) -> list[tuple[str, Path]]:
        saved = []
        for kind in _FILE_KINDS:
            value = message.get(kind)
            item = value[-1] if isinstance(value, list) and value else value
            if not isinstance(item, dict) or "file_id" not in item:
                continue
            data = self.tg.file(item["file_id"])
            if data is None:
                continue
            name = (
                item.get("file_name")
                or self._uploaded_name(call, message)
                or self.names.get(item["file_id"])
                or kind + _EXTENSIONS.get(kind, "")
            )
            self.names[item["file_id"]] = name
            self.saved += 1
            path = self.files / f"{self.saved:02d}-{Path(name).name}"
            path.write_bytes(data)
            saved.append(("photo" if kind == "photo" else kind.replace("_", " "), path))
        return saved

    def _uploaded_name(self, call: Call, message: dict[str, Any]) -> str | None:
        """The file name the bot gave an upload (a QR code's, a chart's)."""
        sources = [m.get("media") for m in call.params.get("media", [])] or [
            call.params.get(kind) for kind in _FILE_KINDS
        ]
        parts = [s.removeprefix("attach://") for s in sources if isinstance(s, str) and s.startswith("attach://")]
        results = self._messages_of(call)
        index = next((i for i, m in enumerate(results) if m.get("message_id") == message.get("message_id")), 0)
        return call.file_names.get(parts[index]) if index < len(parts) else None

    async def member_code(self) -> str:
        async with self.app.sessions() as session:
            member = await get_by_telegram_id(session, MEMBER.user_id)
        assert member is not None, "the member has not joined"
        return member.code


@contextlib.asynccontextmanager
async def open_demo(console: Console, workdir: Path) -> AsyncIterator[Demo]:
    """The emulator, the bot long-polling it with a fresh SQLite database in ``workdir``, and the scheduler."""
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
        # The Mini App on a free local port, opened in an ordinary browser through the demo's stand-in for
        # Telegram's telegram-web-app.js.
        port = _free_port()
        settings = settings.model_copy(
            update={"webapp_url": f"http://127.0.0.1:{port}/app/", "http_host": "127.0.0.1", "http_port": port}
        )
        clock = DemoClock()
        app = await build_services(settings, clock=clock)
        http = await start_http(
            make_http_app(app, serve_updates=True, telegram_script=STAND_IN), settings.http_host, settings.http_port
        )
        handled = Handled()
        app.dispatcher.update.outer_middleware(handled)
        scheduler = make_scheduler(app)
        started = asyncio.Event()

        async def on_startup() -> None:
            started.set()

        app.dispatcher.startup.register(on_startup)
        polling = asyncio.create_task(run_polling(app, handle_signals=False))
        scheduler.start()
        demo = Demo(tg, app, console, workdir, clock, scheduler, handled)
        try:
            # Polling under way before anything is typed: a Ctrl-C during the bot's start-up must find it stoppable.
            waiting = asyncio.create_task(started.wait())
            await asyncio.wait({polling, waiting}, timeout=REPLY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if polling.done():
                polling.result()  # the start-up failed: its error, not a chat with no bot
            yield demo
        finally:
            await http.cleanup()
            await scheduler.stop()
            if started.is_set() and not polling.done():
                await app.dispatcher.stop_polling()
            else:
                polling.cancel()  # ended during the bot's start-up (Ctrl-C, a hang-up): nothing to stop yet
            with contextlib.suppress(asyncio.CancelledError):
                await polling  # an error from the start-up comes out here
            demo.flush()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def tour(demo: Demo) -> None:
    console = demo.console
    steps: list[tuple[str, str | None, str | int]] = [
        ("Ann joins the program", "member", "/start"),
        ("Ann shows her member card at the till", "member", "/card"),
        ("Boss, the admin, records Ann's purchase of ¥36.50 with her member code", "admin", "PURCHASE"),
        ("Ann checks her balance", "member", "/balance"),
        ("...and her points history", "member", "/history"),
        ("Ann gets her invitation link: her friend's first purchase will earn her points", "member", "/refer"),
        ("A day later (the demo's clock moves on): the scheduler asks Ann about her visit", "member", "/clock +1d"),
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


ReadLine = Callable[[str], Awaitable[str | None]]


async def read_line(prompt: str) -> str | None:
    """One line from the terminal; None at its end (EOF).

    A daemon thread, not ``asyncio.to_thread``: a thread left blocked reading after /quit or Ctrl-C must not keep
    the process from exiting (``asyncio.run`` waits for its executor's threads)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[str | None] = loop.create_future()

    def settle(line: str | None) -> None:
        if not answer.done():
            answer.set_result(line)

    def read() -> None:
        line = _input(prompt)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, line)

    threading.Thread(target=read, name="demo-input", daemon=True).start()
    return await answer


def _input(prompt: str) -> str | None:
    if sys.stdin.isatty():
        try:
            return input(prompt)  # with line editing and history
        except EOFError:
            return None
    # From a pipe, input() would hold sys.stdin's lock while it waits, and a daemon thread holding that lock makes
    # the interpreter abort at exit; reading the descriptor itself takes no lock.
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = bytearray()
    while (byte := os.read(sys.stdin.fileno(), 1)) not in (b"", b"\n"):
        line += byte
    if not line and byte == b"":
        return None
    return line.decode(errors="replace").removesuffix("\r")


async def read_message(read: ReadLine, prompt: str) -> str | None:
    """A message as typed: a line ending in a backslash goes on onto the next line."""
    lines: list[str] = []
    while True:
        line = await read(prompt if not lines else "… ")
        if line is None:
            return "\n".join(lines) if lines else None
        if line.rstrip().endswith("\\"):
            lines.append(line.rstrip()[:-1])
            continue
        lines.append(line)
        return "\n".join(lines)


async def chat(demo: Demo, read: ReadLine = read_line) -> None:
    demo.console.print(HELP, markup=False, highlight=False)
    demo.flush()
    watcher = asyncio.create_task(_watch(demo)) if demo.console.is_terminal else None
    try:
        while True:
            message = await read_message(read, f"{demo.me.first_name} › ")
            if message is None or not await demo.handle(message):
                return
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)


async def _watch(demo: Demo) -> None:
    """While the terminal waits for typing: print what the bot sends on its own (a scheduled broadcast, the
    scheduler's messages), once it goes quiet, and show the prompt again."""
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        if demo.pending():
            before = demo._activity()
            await asyncio.sleep(QUIET_SECONDS)
            if demo._activity() == before and demo.pending():
                demo.console.print()
                demo.flush()
                demo.console.print(f"{demo.me.first_name} › ", end="", highlight=False)


async def run_demo(*, scripted: bool, keep: bool = False) -> int:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="loyalty-demo-"))
    # A closed terminal window (SIGHUP) or a kill ends the demo as Ctrl-C does: through the clean-up below.
    loop, main = asyncio.get_running_loop(), asyncio.current_task()
    if main is not None:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, main.cancel)
    try:
        async with open_demo(console, workdir) as demo:
            console.print(
                f"[bold]Loyalty Assistant demo[/] — {demo.app.program.name}, offline against a local Telegram "
                f"emulator at {demo.tg.base_url}. The database, and the photos and files the bot sends, are in "
                f"{workdir}"
                + (" (kept after the demo)." if keep else " (removed when the demo ends; --keep keeps it)."),
                highlight=False,
            )
            demo.show_app_links()
            await (tour(demo) if scripted else chat(demo))
            tg = demo.tg
    finally:
        if keep:
            console.print(f"The demo's files are kept in {workdir}", highlight=False)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if tg.spec_errors:
        console.print(f"[red]The bot sent {len(tg.spec_errors)} request(s) that break the Bot API spec:[/]")
        for error in tg.spec_errors:
            console.print(f"  {error}", markup=False)
        return 1
    console.print("[green]Demo finished; every request the bot made matched the Bot API spec.[/]")
    return 0
