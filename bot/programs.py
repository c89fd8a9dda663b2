"""Every process follows the program revision in force (``loyalty.revisions``) within seconds, without a restart.

With Redis (LOYALTY_REDIS_URL), whoever saves a revision publishes its number on one channel and every process
reads it at once; each still reads the current number every 30 s, should a message be lost while it was
reconnecting. Without Redis, each process reads the current number every 2 s: one read of a primary key's index.
A revision is read by the models of the code that runs; one they refuse (a newer version's key, during a rolling
deploy) is logged once and the program in force stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from loyalty.program import Program, ProgramError
from loyalty.revisions import CHANNEL, ProgramRef, announce, current_number, get_revision
from storage.database import SessionFactory

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0
POLL_SECONDS_WITH_REDIS = 30.0


# Told the program that was in force and the new one, after the swap (the menu button follows a renamed shop).
OnChange = Callable[[Program, Program], Awaitable[None]]


class ProgramWatcher:
    def __init__(
        self,
        sessions: SessionFactory,
        programs: ProgramRef,
        redis: Any | None = None,
        every: float | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        self.sessions, self.programs, self.redis, self.on_change = sessions, programs, redis, on_change
        self.every = every if every is not None else POLL_SECONDS if redis is None else POLL_SECONDS_WITH_REDIS
        self.task: asyncio.Task[None] | None = None
        self._refused: int | None = None  # the revision last found unreadable, not to be logged again

    async def refresh(self) -> bool:
        """Read the revision in force; when it is not ours, put it in force here. Whether it changed."""
        async with self.sessions() as session:
            number = await current_number(session)
            if number is None or number == self.programs.revision or number == self._refused:
                return False
            try:
                revision = await get_revision(session, number)
            except ProgramError as exc:
                self._refused = number
                log.error("program revision %d cannot be used by this version; the one in force stays: %s", number, exc)
                return False
        if revision is None:  # pragma: no cover - revisions are never deleted
            return False
        was, self.programs.current = self.programs.current, revision.program
        log.info("program revision %d is in force now (was %s)", number, was.revision)
        if self.on_change is not None:
            try:
                await self.on_change(was, revision.program)
            except Exception:  # Telegram away, say: the revision is in force all the same
                log.warning("could not follow program revision %d everywhere", number, exc_info=True)
        return True

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="program-watcher")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def _run(self) -> None:
        while True:
            try:
                if self.redis is not None:
                    await self._listen()
                else:
                    await asyncio.sleep(self.every)
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or Redis away for a moment: try again, keep the program
                log.warning("cannot check the program revision (%s): trying again in %.0f s", exc, self.every)
                await asyncio.sleep(self.every)

    async def _listen(self) -> None:
        assert self.redis is not None
        pubsub = self.redis.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            await self.refresh()  # anything saved while this process was not listening
            while True:
                # A message, or nothing for ``every`` seconds: either way, read the number.
                await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.every)
                await self.refresh()
        finally:
            await pubsub.aclose()


async def announce_to(redis_url: str, number: int) -> str | None:
    """``announce`` from a process without a Redis client of its own (the CLI); the problem, if it failed."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(5):
            await announce(client, number)
    except (RedisError, OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    finally:
        await client.aclose()
    return None
