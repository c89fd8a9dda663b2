"""Several workers on one Redis (``bot.gate``): a conversation started on one continues on another, handled
updates are shared, one conversation's updates never interleave, and each update costs two round trips.

Uses Redis database 3 (flushed before and after).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiogram import Dispatcher
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.gate import LONGEST_PAUSE, RedisGate
from bot.services import compose
from tests.harness import BotHarness

# These tests flush the database: on a shared machine each checkout names its own.
REDIS_URL = os.environ.get("LOYALTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")
ANN = 1001


class CountingRedis(Redis):
    """The Redis client with a list of the commands it sent: what a worker costs Redis, seen from the worker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]).upper())
        return await super().execute_command(*args, **options)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    await client.ping()  # Redis is part of the stack (.ci/run starts it): no Redis is a failure, not a skip
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


def _worker(harness: BotHarness) -> tuple[Dispatcher, CountingRedis]:
    client = CountingRedis.from_url(REDIS_URL)
    gate = RedisGate(RedisStorage(client, key_builder=DefaultKeyBuilder(with_destiny=True)))
    services = compose(
        harness.services.settings,
        harness.services.program,
        harness.sessions,
        harness.bot,
        clock=harness.clock,
        fsm=gate,
    )
    return services.dispatcher, client


async def _close(*dps: Dispatcher) -> None:
    for dp in dps:
        await dp.storage.close()


def _lock_key(user_id: int) -> str:
    """aiogram's own key for the lock of a private chat's conversation: old and new workers exclude each other."""
    return f"fsm:{user_id}:{user_id}:default:lock"


async def test_a_conversation_started_on_one_worker_continues_on_another(harness: BotHarness, redis: Redis) -> None:
    (one, _), (two, _) = _worker(harness), _worker(harness)
    ann = harness.user(ANN, "Ann")
    harness.dp = one
    await harness.send(ann, "/start")
    await harness.send(ann, "/profile")
    calls = await harness.press(ann, "🎂 Set birthday")  # worker one now waits for a date
    assert "When is your birthday?" in harness.texts(calls, ANN)[-1]
    assert await redis.keys("fsm:*"), "the state lives in Redis"
    harness.dp = two  # the next update lands on the other worker
    calls = await harness.send(ann, "07-14")
    assert "Your birthday: <b>14 July</b>. Is that right?" in harness.texts(calls, ANN)[-1]
    harness.dp = one  # the tap lands on the first worker again: the pending date is in Redis too
    calls = await harness.press(ann, "✅ Confirm")
    assert "Birthday saved: 14 July" in harness.texts(calls, ANN)[-1]
    member = await harness.member(ANN)
    assert member is not None and (member.birth_month, member.birth_day) == (7, 14)
    # The key builder keeps the destiny in the key, so other FSM destinies could never collide with it.
    assert all(b":default:" in key for key in await redis.keys("fsm:*"))
    await _close(one, two)


async def test_an_update_handled_by_one_worker_is_skipped_by_the_other(harness: BotHarness, redis: Redis) -> None:
    (one, _), (two, _) = _worker(harness), _worker(harness)
    update = harness.tg.message_update(harness.user(ANN, "Ann"), "/start")
    harness.dp = one
    assert harness.texts(await harness.feed(update), ANN)
    harness.dp = two
    assert await harness.feed(update) == [], "the redelivery to another worker does nothing"
    await _close(one, two)


async def test_an_update_costs_two_round_trips_to_redis(harness: BotHarness, redis: Redis) -> None:
    dp, client = _worker(harness)
    harness.dp = dp
    ann = harness.user(ANN, "Ann")
    await harness.send(ann, "/start")
    client.commands.clear()
    update = harness.tg.message_update(ann, "/balance")
    assert "points" in harness.texts(await harness.feed(update), ANN)[-1]
    # In: handled already? the lock, the state. Out: the lock back, the update marked. (EVAL only if Redis lost
    # the script.)
    assert client.commands == ["EVALSHA", "EVALSHA"]
    assert await redis.exists(f"loyalty:update:{harness.bot.id}:{update['update_id']}")
    assert not await redis.exists(_lock_key(ANN)), "the lock was given back"
    await _close(dp)


async def test_a_lock_held_elsewhere_is_waited_for_without_polling_it_every_few_milliseconds(
    harness: BotHarness, redis: Redis
) -> None:
    dp, client = _worker(harness)
    harness.dp = dp
    ann = harness.user(ANN, "Ann")
    await harness.send(ann, "/start")
    await redis.set(_lock_key(ANN), "another-worker", px=10_000)  # another worker is handling Ann's update
    client.commands.clear()
    waiting = asyncio.create_task(harness.send(ann, "/balance"))
    await asyncio.sleep(0.4)
    assert not waiting.done(), "her next update waits for the other one"
    tries = client.commands.count("EVALSHA")
    # 2 ms doubling to 50 ms: about a dozen tries in 0.4 s, where polling every 5 ms tried eighty times.
    assert 3 <= tries <= 0.4 / LONGEST_PAUSE + 6
    await redis.delete(_lock_key(ANN))  # the other worker gives it back
    assert "points" in harness.texts(await waiting, ANN)[-1]
    await _close(dp)


async def test_a_lock_left_by_a_dead_worker_expires(harness: BotHarness, redis: Redis) -> None:
    dp, _ = _worker(harness)
    harness.dp = dp
    ann = harness.user(ANN, "Ann")
    await harness.send(ann, "/start")
    await redis.set(_lock_key(ANN), "killed-worker", px=300)  # its worker died mid-update
    calls = await asyncio.wait_for(harness.send(ann, "/balance"), timeout=5)
    assert "points" in harness.texts(calls, ANN)[-1]
    await _close(dp)


async def test_one_conversations_updates_on_one_worker_queue_in_the_worker(harness: BotHarness, redis: Redis) -> None:
    dp, client = _worker(harness)
    harness.dp = dp
    ann = harness.user(ANN, "Ann")
    await harness.send(ann, "/start")
    client.commands.clear()
    calls = await asyncio.gather(*(harness.send(ann, command) for command in ("/balance", "/card", "/history")))
    assert all(harness.texts(c, ANN) for c in calls)
    # Each entered at its turn: no try found the lock held, so Redis saw two scripts an update and nothing more.
    assert client.commands == ["EVALSHA"] * 6
    await _close(dp)


async def test_an_update_whose_handler_failed_is_not_marked_and_gives_its_lock_back(
    harness: BotHarness, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    dp, _ = _worker(harness)
    harness.dp = dp
    ann = harness.user(ANN, "Ann")
    await harness.send(ann, "/start")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the handler broke")

    monkeypatch.setattr("handlers.account.summary", broken)
    update = harness.tg.message_update(ann, "/balance")
    await harness.feed(update)
    assert not await redis.exists(f"loyalty:update:{harness.bot.id}:{update['update_id']}")
    assert not await redis.exists(_lock_key(ANN))
    await _close(dp)


async def test_an_update_handled_while_redis_failed_to_take_its_lock_back_is_still_answered(
    harness: BotHarness, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    dp, _ = _worker(harness)
    harness.dp = dp
    ann = harness.user(ANN, "Ann")
    await harness.send(ann, "/start")
    gate = dp.fsm
    assert isinstance(gate, RedisGate)

    async def redis_went_away(*args: Any, **kwargs: Any) -> Any:
        raise RedisConnectionError("Connection reset by peer")

    monkeypatch.setattr(gate, "_leave", redis_went_away)
    calls = await harness.send(ann, "/balance")  # raises nothing: the member has her answer
    assert "points" in harness.texts(calls, ANN)[-1]
    await _close(dp)
