"""How an update enters its conversation on the production path (Redis): one round trip in, one out.

aiogram's FSM on Redis, with our record of handled updates, cost every update five round trips: is it handled
already (EXISTS), take the conversation's lock (SET NX), read its state (GET), give the lock back (a script), mark
it handled (SET). Each costs the worker more CPU in redis-py and the socket than the Redis command itself, and
together they were a fifth of a /balance. Here one script answers "handled already", "yours, and here is the
state" or "busy for so long", and one gives the lock back and marks the update handled.

The keys are aiogram's and the record's own (``fsm:…:lock``, ``fsm:…:state``, ``loyalty:update:…``), and the lock
is a token under SET NX PX as redis-py's ``Lock`` takes it: workers of the previous release, still draining during
a deploy, exclude the same conversations.

A conversation whose lock another worker holds is tried again after a pause that doubles (from 2 ms to 50 ms),
not every 5 ms: under overload, waiters polling a held lock were most of Redis's and the workers' work. Updates of
one conversation on one worker queue in the worker instead, without asking Redis at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast
from uuid import uuid4

from aiogram import Bot
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.fsm.middleware import FSMContextMiddleware
from aiogram.fsm.storage.memory import DisabledEventIsolation
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.types import TelegramObject, Update
from redis.exceptions import RedisError

from bot.dedupe import KEEP_SECONDS

log = logging.getLogger(__name__)

HANDLED, ENTERED, BUSY = 0, 1, 2
FIRST_PAUSE = 0.002
LONGEST_PAUSE = 0.05

# KEYS: the update's record, the conversation's lock, its state (if it has one). ARGV: this worker's token, the
# lock's lifetime (ms).
ENTER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, KEYS[3] and redis.call('GET', KEYS[3]) or false}
end
return {2, redis.call('PTTL', KEYS[2])}
"""
# KEYS: the lock, the update's record. ARGV: the token, how long the record is kept (s), whether to mark (1 or 0).
LEAVE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if ARGV[3] == '1' then redis.call('SET', KEYS[2], 1, 'EX', ARGV[2]) end
return 1
"""


class KeyedLocks:
    """An asyncio lock per key, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class RedisGate(FSMContextMiddleware):
    """aiogram's FSM middleware (``state`` and ``raw_state`` in handler data), with event isolation and the record
    of handled updates folded into two scripts. An update that was handled already is skipped."""

    def __init__(self, storage: RedisStorage, *, lock_seconds: float = 10.0, prefix: str = "loyalty:update:") -> None:
        super().__init__(storage=storage, events_isolation=DisabledEventIsolation())
        self.redis = storage.redis
        self.key_builder = storage.key_builder
        self.lock_ms = int(lock_seconds * 1000)
        self.prefix = prefix
        self.local = KeyedLocks()
        self._enter = self.redis.register_script(ENTER)
        self._leave = self.redis.register_script(LEAVE)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisGate:
        # with_destiny: keys carry the FSM destiny, so scenes or a second FSM could never read each other's state.
        # A lock expires after 10 s rather than aiogram's 60: a worker killed mid-update leaves its locks behind,
        # and its members wait that long.
        return cls(RedisStorage.from_url(url, key_builder=DefaultKeyBuilder(with_destiny=True)), **kwargs)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        bot, update = cast(Bot, data["bot"]), cast(Update, event)  # the dispatcher's update observer: always updates
        data["fsm_storage"] = self.storage
        record = f"{self.prefix}{bot.id}:{update.update_id}"  # update ids are per bot
        context = self.resolve_event_context(bot, data)
        if context is None:  # no chat and no user: the update is its own conversation
            keys = [record, f"{record}:lock"]
        else:
            keys = [record, self.key_builder.build(context.key, "lock"), self.key_builder.build(context.key, "state")]
        lock, token = keys[1], uuid4().hex
        async with self.local.hold(lock):
            pause = FIRST_PAUSE
            while True:
                answer = await self._enter(keys=keys, args=[token, self.lock_ms])
                if answer[0] == HANDLED:
                    return self._skipped(update)
                if answer[0] == ENTERED:
                    break
                # Another worker holds it: wait, but not past the moment it expires.
                await asyncio.sleep(min(pause, max(int(answer[1]), 1) / 1000))
                pause = min(pause * 2, LONGEST_PAUSE)
            if context is not None:
                state = answer[1]
                data.update({"state": context, "raw_state": state.decode() if isinstance(state, bytes) else state})
            handled = False
            try:
                result = await handler(update, data)
                handled = True
                return result
            finally:
                await self._give_back(lock, record, token, handled)

    async def _give_back(self, lock: str, record: str, token: str, handled: bool) -> None:
        """An update whose handler raised stays unmarked: Telegram's redelivery gets a second chance. If Redis
        fails here the update was still handled and is answered so: its lock expires by itself."""
        try:
            await self._leave(keys=[lock, record], args=[token, KEEP_SECONDS, int(handled)])
        except (RedisError, OSError) as exc:
            log.warning("could not give back %s or mark the update handled: %s", lock, exc)

    @staticmethod
    def _skipped(event: Update) -> Any:
        log.info("update %s was handled already; skipped", event.update_id)
        return UNHANDLED
