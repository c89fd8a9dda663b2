"""Sending broadcasts: one rate limiter for the whole bot, batches claimed from the queue, progress shown live."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.settings import Settings
from handlers.ui import speaking
from loyalty import broadcasts
from loyalty.broadcasts import Item, Outcome
from loyalty.privacy import mark_blocked
from loyalty.program import Program
from storage.database import SessionFactory

log = logging.getLogger(__name__)

PROGRESS_EVERY = 3.0  # seconds between edits of the admin's status message
NETWORK_RETRIES = 3


class StopPromotions(CallbackData, prefix="nopromo"):
    pass


class RateLimiter:
    """Evenly spaced sending slots at ``rate`` a second, shared by every sender; a 429 pauses them all."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate
        self._next = 0.0
        self._paused_until = 0.0

    async def wait(self) -> None:
        while True:
            now = time.monotonic()
            slot = max(now, self._next, self._paused_until)
            self._next = slot + self.interval
            if slot > now:
                await asyncio.sleep(slot - now)
            if time.monotonic() >= self._paused_until:
                return

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)


def variant(content: dict[str, Any], language: str) -> dict[str, Any]:
    """The member's language's version of a broadcast, else the default."""
    chosen: dict[str, Any] = content.get(language) or content["default"]
    return chosen


def markup_for(message: dict[str, Any]) -> InlineKeyboardMarkup:
    rows = []
    if message.get("button"):
        rows.append([InlineKeyboardButton(text=message["button"]["text"], url=message["button"]["url"])])
    rows.append([InlineKeyboardButton(text=_("🔕 Stop promotions"), callback_data=StopPromotions().pack())])
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def send_variant(bot: Bot, chat_id: int, message: dict[str, Any], markup: InlineKeyboardMarkup,
                       **kwargs: Any) -> int:
    if message.get("photo"):
        sent = await bot.send_photo(chat_id, message["photo"], caption=message.get("text") or None,
                                    reply_markup=markup, **kwargs)
    else:
        sent = await bot.send_message(chat_id, message["text"], reply_markup=markup, **kwargs)
    return sent.message_id


class Broadcaster:
    """Runs every running broadcast to the end. One per process; several processes share the queue safely."""

    def __init__(self, sessions: SessionFactory, program: Program, i18n: I18n, settings: Settings,
                 clock: Callable[[], datetime]) -> None:
        self.sessions, self.program, self.i18n, self.clock = sessions, program, i18n, clock
        self.bot: Bot | None = None
        self.limiter = RateLimiter(settings.broadcast_rate)
        self.paid = settings.paid_broadcasts
        # Enough sends in flight to fill the rate even when Telegram takes a while to answer each.
        self.concurrency = max(4, min(256, int(settings.broadcast_rate)))
        self._lock = asyncio.Lock()
        self.task: asyncio.Task[int] | None = None

    def kick(self, bot: Bot) -> None:
        """Start sending in the background, unless this process is already at it."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run_pending(bot))

    async def run_pending(self, bot: Bot, now: datetime | None = None) -> int:
        """Start due scheduled broadcasts and send every running one; returns messages sent. The scheduler
        runs it too, so scheduled broadcasts start and interrupted ones resume after a restart."""
        async with self._lock:
            self.bot = bot
            sent = 0
            async with self.sessions() as session:
                await broadcasts.start_due(session, now or self.clock())
                running = [b.id for b in await broadcasts.running(session) if b.id is not None]
            for broadcast_id in running:
                sent += await self._run(broadcast_id)
            return sent

    async def _run(self, broadcast_id: int) -> int:
        async with self.sessions() as session:
            broadcast = await broadcasts.get(session, broadcast_id)
            if broadcast is None:
                return 0
            content = json.loads(broadcast.content)
        sent = 0
        started, last_report = time.monotonic(), 0.0
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(item: Item) -> bool:
            async with semaphore:
                return await self._send(item, content)

        while True:
            async with self.sessions() as session:
                current = await broadcasts.get(session, broadcast_id)
                if current is None or current.status != broadcasts.Status.RUNNING:
                    break  # paused or cancelled
                batch = await broadcasts.claim(session, broadcast_id, self.clock(), self.concurrency * 2)
            if not batch:
                async with self.sessions() as session:
                    if await broadcasts.finish(session, broadcast_id, self.clock()):
                        await self._report(broadcast_id, started, final=True)
                        break
                await asyncio.sleep(1)  # rows of a crashed worker are waiting to turn "unknown"
                continue
            sent += sum(await asyncio.gather(*(one(item) for item in batch)))
            if time.monotonic() - last_report >= PROGRESS_EVERY:
                last_report = time.monotonic()
                await self._report(broadcast_id, started, final=False)
        return sent

    async def _send(self, item: Item, content: dict[str, Any]) -> bool:
        message = variant(content, item.language)
        with speaking(self.i18n, item.language):
            markup = markup_for(message)
        extra = {"allow_paid_broadcast": True} if self.paid else {}
        for attempt in range(NETWORK_RETRIES + 1):
            await self.limiter.wait()
            try:
                assert self.bot is not None
                message_id = await send_variant(self.bot, item.chat_id, message, markup, **extra)
            except TelegramRetryAfter as exc:
                self.limiter.pause(exc.retry_after)  # every sender waits, then this one tries again
                continue
            except TelegramForbiddenError:
                async with self.sessions() as session:
                    await mark_blocked(session, item.chat_id, True, self.clock())
                    await broadcasts.record(session, item, Outcome.BLOCKED, self.clock())
                return False
            except (TelegramNetworkError, TelegramServerError) as exc:
                if attempt < NETWORK_RETRIES:
                    await asyncio.sleep(0.5 * 2 ** attempt)
                    continue
                await self._failed(item, str(exc))
                return False
            except TelegramAPIError as exc:
                await self._failed(item, exc.message)
                return False
            async with self.sessions() as session:
                await broadcasts.record(session, item, Outcome.SENT, self.clock(), message_id=message_id)
            return True
        await self._failed(item, "flood control did not clear")
        return False

    async def _failed(self, item: Item, reason: str) -> None:
        log.warning("broadcast delivery %s to member %s failed: %s", item.delivery_id, item.member_id, reason)
        async with self.sessions() as session:
            await broadcasts.record(session, item, Outcome.FAILED, self.clock(), error=reason)

    async def _report(self, broadcast_id: int, started: float, *, final: bool) -> None:
        async with self.sessions() as session:
            broadcast = await broadcasts.get(session, broadcast_id)
            progress = await broadcasts.progress(session, broadcast_id)
        if broadcast is None or broadcast.status_chat_id is None or broadcast.status_message_id is None \
                or self.bot is None:
            return
        with speaking(self.i18n, self.program.staff_language):
            text = progress_text(broadcast_id, progress, time.monotonic() - started, final=final)
        try:
            await self.bot.edit_message_text(text, chat_id=broadcast.status_chat_id,
                                             message_id=broadcast.status_message_id)
        except TelegramBadRequest as exc:
            if "message is not modified" not in exc.message:
                log.warning("could not update broadcast %s progress: %s", broadcast_id, exc.message)
        except TelegramAPIError:
            log.warning("could not update broadcast %s progress", broadcast_id, exc_info=True)


def progress_text(broadcast_id: int, progress: broadcasts.Progress, elapsed: float, *, final: bool) -> str:
    done = progress.of(Outcome.SENT) + progress.of(Outcome.FAILED) + progress.of(Outcome.BLOCKED)
    rate = done / elapsed if elapsed > 0 else 0.0
    head = (_("✅ Broadcast #{id} finished.") if final else _("📣 Broadcast #{id} is being sent…")).format(
        id=broadcast_id)
    lines = [
        head,
        _("Sent: {sent} · failed: {failed} · blocked: {blocked} · remaining: {remaining}").format(
            sent=progress.of(Outcome.SENT), failed=progress.of(Outcome.FAILED),
            blocked=progress.of(Outcome.BLOCKED), remaining=progress.remaining),
    ]
    if progress.of(Outcome.UNKNOWN):
        lines.append(_("Unknown (interrupted while sending, not resent): {count}").format(
            count=progress.of(Outcome.UNKNOWN)))
    if not final and rate > 0:
        lines.append(_("{rate:.1f} messages a second, about {seconds} s left").format(
            rate=rate, seconds=int(progress.remaining / rate)))
    return "\n".join(lines)
