"""Sending broadcasts: one rate limiter for the whole bot, batches claimed from the queue, progress shown live."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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

from loyalty import broadcasts
from loyalty.broadcasts import Item, Outcome, Result
from loyalty.numbers import RowId
from loyalty.program import Program
from loyalty.revisions import ProgramRef
from notifications.texts import N_, speaking
from storage.database import SessionFactory

log = logging.getLogger(__name__)

PROGRESS_EVERY = 3.0  # seconds between edits of the admin's status message
FLUSH_EVERY = 0.5  # seconds between writes of outcomes: at most this much is "unknown" after a crash
NETWORK_RETRIES = 3
# Telegram's limits on messages a second: about 30 for free, up to 1,000 with paid broadcasts.
TELEGRAM_LIMIT = 30
CATCH_UP = 0.1  # seconds of sending slots the rate limiter may make up after falling behind
TELEGRAM_PAID_LIMIT = 1000
FLOOD_RETRIES = 10
STATUS_NAMES = {
    "scheduled": N_("scheduled"),
    "running": N_("sending"),
    "paused": N_("paused"),
    "done": N_("done"),
    "cancelled": N_("cancelled"),
}


class StopPromotions(CallbackData, prefix="nopromo"):
    pass


class ResendUnknown(CallbackData, prefix="bcu"):
    """The admin's choice, offered in a broadcast's final report after a crash left some copies unknown."""

    broadcast_id: RowId


class RateLimiter:
    """Sending slots for every sender of the bot: evenly spaced at ``rate`` a second, and never more than
    ``ceiling`` sends that Telegram may count in one second; a 429 pauses them all.

    Telegram counts a message when it arrives, somewhere between our request and its answer, so evenly spaced
    requests still bunch up on arrival when answers are slow to come back. A new request is therefore let out
    only while fewer than ``ceiling`` requests are in flight or were answered in the last second: then no
    second, however measured on Telegram's side, can see more than ``ceiling``. The spacing makes the rate;
    the ceiling only binds when the configured rate is close to Telegram's limit.
    """

    def __init__(self, rate: float, ceiling: float | None = None) -> None:
        self.interval = 1 / rate
        self.ceiling = ceiling or rate
        self._next = 0.0
        self._paused_until = 0.0
        self._in_flight = 0
        self._answered: deque[float] = deque()  # when recent requests were answered, oldest first
        self._gate = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a slot; the caller sends and then calls :meth:`release`."""
        now = time.monotonic()
        # Slots missed while the event loop was busy are made up, a little at a time; the ceiling still holds.
        slot = max(now - CATCH_UP, self._next, self._paused_until)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
        async with self._gate:  # one sender at a time watches the ceiling; the others queue behind it in order
            while True:
                now = time.monotonic()
                while self._answered and self._answered[0] <= now - 1:
                    self._answered.popleft()
                if now >= self._paused_until and self._in_flight + len(self._answered) < self.ceiling:
                    self._in_flight += 1
                    return
                oldest = self._answered[0] + 1 if self._answered else now + self.interval
                await asyncio.sleep(max(self._paused_until, oldest) - now)

    def release(self) -> None:
        self._in_flight -= 1
        self._answered.append(time.monotonic())

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


async def send_variant(
    bot: Bot, chat_id: int, message: dict[str, Any], markup: InlineKeyboardMarkup, **kwargs: Any
) -> int:
    if message.get("photo"):
        sent = await bot.send_photo(
            chat_id, message["photo"], caption=message.get("text") or None, reply_markup=markup, **kwargs
        )
    else:
        sent = await bot.send_message(chat_id, message["text"], reply_markup=markup, **kwargs)
    return sent.message_id


class Broadcaster:
    """Sends every running broadcast to the end, through one rate limiter.

    Only one process sends (the one running the scheduler, or the only one), so the limit holds for the bot as
    a whole; several would still never send a row twice (claims skip locked rows). A feeder claims rows about
    half a second of sending at a time, workers send them, and outcomes are written in batches. When the task is
    cancelled (shutdown, crash of the event loop's owner), rows not yet sent go back to the queue, outcomes
    already known are written, and only sends that were in flight stay "sending" and later count as unknown.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        program: Program | ProgramRef,
        i18n: I18n,
        clock: Callable[[], datetime],
        *,
        rate: float,
        paid: bool = False,
    ) -> None:
        self.sessions, self.i18n, self.clock = sessions, i18n, clock
        self.programs = program if isinstance(program, ProgramRef) else ProgramRef(program)
        self.enabled = True  # False in a process that answers updates while another runs the scheduler
        self.bot: Bot | None = None
        ceiling = TELEGRAM_PAID_LIMIT if paid else TELEGRAM_LIMIT
        self.limiter = RateLimiter(min(rate, ceiling), ceiling)
        self.paid = paid
        # Enough sends in flight to fill the rate while Telegram takes up to half a second to answer each, and
        # no more: rows claimed ahead of sending are what a hard crash leaves "unknown".
        self.concurrency = max(4, min(256, int(rate / 2)))
        self._lock = asyncio.Lock()
        self.task: asyncio.Task[int] | None = None

    @property
    def program(self) -> Program:
        return self.programs.current

    def kick(self, bot: Bot) -> None:
        """Start sending in the background, unless this process is already at it (or does not send)."""
        if self.enabled and (self.task is None or self.task.done()):
            self.task = asyncio.create_task(self.run_pending(bot))

    async def stop(self) -> None:
        """Stop sending (at shutdown): unsent rows go back to the queue for the next start."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def tick(self, bot: Bot, now: datetime) -> int:
        """The scheduler's job: start broadcasts whose time has come, resume interrupted ones."""
        async with self.sessions() as session:
            await broadcasts.start_due(session, now)
        self.kick(bot)
        return 0

    async def run_pending(self, bot: Bot) -> int:
        """Send every running broadcast, one after another, until none is left; returns messages sent."""
        async with self._lock:
            self.bot = bot
            sent = 0
            while True:
                async with self.sessions() as session:
                    await broadcasts.start_due(session, self.clock())
                    running = [b.id for b in await broadcasts.running(session) if b.id is not None]
                if not running:
                    return sent
                sent += await self._run(running[0])

    async def _run(self, broadcast_id: int) -> int:
        async with self.sessions() as session:
            broadcast = await broadcasts.get(session, broadcast_id)
            if broadcast is None:
                return 0
            content = json.loads(broadcast.content)
        run = _Run(broadcast_id, content, time.monotonic(), asyncio.Queue(maxsize=self.concurrency), _Marks(self._mark))
        workers = [asyncio.create_task(self._work(run)) for _ in range(self.concurrency)]
        keeper = asyncio.create_task(self._keep_books(run))
        try:
            await self._feed(run)
            await self._release(run.drain())  # paused or cancelled: what was claimed but not sent goes back
            await run.queue.join()
        finally:
            for task in (*workers, keeper):
                task.cancel()
            await asyncio.gather(*workers, keeper, return_exceptions=True)
            await self._release(run.drain() + run.unsent)
            await self._flush(run)
        if run.finished:
            await self._report(run, final=True)
        return run.sent

    async def _feed(self, run: _Run) -> None:
        while True:
            async with self.sessions() as session:
                if run.stopping or await broadcasts.status_of(session, run.broadcast_id) != broadcasts.Status.RUNNING:
                    return  # paused or cancelled
                batch = await broadcasts.claim(session, run.broadcast_id, self.clock(), self.concurrency)
            for item in batch:
                await run.queue.put(item)
            if batch:
                continue
            await run.queue.join()
            await self._flush(run)
            async with self.sessions() as session:
                if await broadcasts.finish(session, run.broadcast_id, self.clock()):
                    run.finished = True
                    return
            await asyncio.sleep(1)  # rows another sender holds: they finish, or turn "unknown" after a while

    async def _work(self, run: _Run) -> None:
        while True:
            item = await run.queue.get()
            try:
                result = await self._send(item, run)
                if result is None:
                    run.unsent.append(item)
                else:
                    run.results.append(result)
                    run.sent += result.outcome is Outcome.SENT
            finally:
                run.queue.task_done()

    async def _send(self, item: Item, run: _Run) -> Result | None:
        """Send one copy; None when the broadcast stopped before it went out."""
        message = variant(run.content, item.language)
        with speaking(self.i18n, item.language):
            markup = markup_for(message)
        extra = {"allow_paid_broadcast": True} if self.paid else {}
        network_failures = floods = 0
        while True:
            try:
                await self.limiter.acquire()
            except asyncio.CancelledError:
                if not network_failures:  # no attempt can have reached the member
                    run.unsent.append(item)
                raise
            try:
                if run.stopping and not network_failures:
                    return None
                if not network_failures and not floods:
                    await run.marks.mark(item)  # from here on a crash leaves this row "unknown"
                assert self.bot is not None
                message_id = await send_variant(self.bot, item.chat_id, message, markup, **extra)
            except TelegramRetryAfter as exc:
                floods += 1
                if floods > FLOOD_RETRIES:
                    return Result(item, Outcome.FAILED, error="flood control did not clear")
                self.limiter.pause(exc.retry_after)  # every sender waits, then this one tries again
                continue
            except TelegramForbiddenError:
                return Result(item, Outcome.BLOCKED)
            except (TelegramNetworkError, TelegramServerError) as exc:
                # The message may have arrived; retrying risks a duplicate, giving up risks a miss.
                network_failures += 1
                if network_failures > NETWORK_RETRIES:
                    return Result(item, Outcome.FAILED, error=str(exc))
                await asyncio.sleep(0.5 * 2**network_failures)
                continue
            except TelegramAPIError as exc:
                return Result(item, Outcome.FAILED, error=exc.message)
            finally:
                self.limiter.release()
            return Result(item, Outcome.SENT, message_id=message_id)

    async def _keep_books(self, run: _Run) -> None:
        """Write outcomes every half second, notice a pause or cancel, and refresh the admin's progress message
        every few seconds."""
        last_report = time.monotonic()
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self._flush(run)
            async with self.sessions() as session:
                if await broadcasts.status_of(session, run.broadcast_id) != broadcasts.Status.RUNNING:
                    run.stopping = True
            if time.monotonic() - last_report >= PROGRESS_EVERY:
                last_report = time.monotonic()
                await self._report(run, final=False)

    async def _flush(self, run: _Run) -> None:
        results, run.results = run.results, []
        for result in results:
            if result.outcome is Outcome.FAILED:
                log.warning(
                    "broadcast %s to member %s failed: %s", run.broadcast_id, result.item.member_id, result.error
                )
        async with self.sessions() as session:
            await broadcasts.record(session, results, self.clock())

    async def _mark(self, items: list[Item]) -> None:
        async with self.sessions() as session:
            await broadcasts.mark_sending(session, items, self.clock())

    async def _release(self, items: list[Item]) -> None:
        async with self.sessions() as session:
            await broadcasts.release(session, items)

    async def _report(self, run: _Run, *, final: bool) -> None:
        async with self.sessions() as session:
            broadcast = await broadcasts.get(session, run.broadcast_id)
            progress = await broadcasts.progress(session, run.broadcast_id)
        if (
            broadcast is None
            or broadcast.status_chat_id is None
            or broadcast.status_message_id is None
            or self.bot is None
        ):
            return
        with speaking(self.i18n, self.program.staff_language):
            text = progress_text(run.broadcast_id, progress, time.monotonic() - run.started, final=final)
            unknown = progress.of(Outcome.UNKNOWN)
            markup = resend_markup(run.broadcast_id, unknown) if final and unknown else None
        try:
            await self.bot.edit_message_text(
                text, chat_id=broadcast.status_chat_id, message_id=broadcast.status_message_id, reply_markup=markup
            )
        except TelegramBadRequest as exc:
            if "message is not modified" not in exc.message:
                log.warning("could not update broadcast %s progress: %s", run.broadcast_id, exc.message)
        except TelegramAPIError:
            log.warning("could not update broadcast %s progress", run.broadcast_id, exc_info=True)


class _Marks:
    """Marks rows "sending" for all workers together: each waits for the one write that carries its row, so at a
    thousand messages a second the marks cost a write per batch in flight, not one per message."""

    def __init__(self, write: Callable[[list[Item]], Awaitable[None]]) -> None:
        self.write = write
        self.waiting: list[tuple[Item, asyncio.Future[None]]] = []
        self.writer: asyncio.Task[None] | None = None

    async def mark(self, item: Item) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, done))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write_all())
        await done

    async def _write_all(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                await self.write([item for item, _ in batch])
            except Exception as exc:  # each waiting send fails with it; nothing was sent
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


@dataclass
class _Run:
    """One sender's pass over one broadcast."""

    broadcast_id: int
    content: dict[str, Any]
    started: float
    queue: asyncio.Queue[Item]
    marks: _Marks
    results: list[Result] = field(default_factory=list)
    unsent: list[Item] = field(default_factory=list)  # taken by a worker, never sent
    sent: int = 0
    stopping: bool = False  # paused or cancelled: send nothing more
    finished: bool = False

    def drain(self) -> list[Item]:
        """Take back what no worker has picked up yet."""
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
            self.queue.task_done()
        return items


def status_name(status: str) -> str:
    return _(STATUS_NAMES[status]) if status in STATUS_NAMES else status


def resend_markup(broadcast_id: int, unknown: int) -> InlineKeyboardMarkup:
    button = InlineKeyboardButton(
        text=_("🔁 Send to the {count} unknown too (they may get it twice)").format(count=unknown),
        callback_data=ResendUnknown(broadcast_id=broadcast_id).pack(),
    )
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def progress_text(broadcast_id: int, progress: broadcasts.Progress, elapsed: float, *, final: bool) -> str:
    done = progress.of(Outcome.SENT) + progress.of(Outcome.FAILED) + progress.of(Outcome.BLOCKED)
    rate = done / elapsed if elapsed > 0 else 0.0
    head = (_("✅ Broadcast #{id} finished.") if final else _("📣 Broadcast #{id} is being sent…")).format(
        id=broadcast_id
    )
    lines = [
        head,
        _("Sent: {sent} · failed: {failed} · blocked: {blocked} · remaining: {remaining}").format(
            sent=progress.of(Outcome.SENT),
            failed=progress.of(Outcome.FAILED),
            blocked=progress.of(Outcome.BLOCKED),
            remaining=progress.remaining,
        ),
    ]
    if progress.of(Outcome.UNKNOWN):
        lines.append(
            _("Unknown (interrupted while sending, not resent): {count}").format(count=progress.of(Outcome.UNKNOWN))
        )
    if not final and rate > 0:
        lines.append(
            _("{rate:.1f} messages a second, about {seconds} s left").format(
                rate=rate, seconds=int(progress.remaining / rate)
            )
        )
    return "\n".join(lines)
