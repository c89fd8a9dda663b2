"""Several workers on one Redis: a conversation started on one continues on another; handled updates are shared.

Uses Redis database 3 (flushed before and after).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.dedupe import RedisSeenUpdates
from bot.runner import make_fsm_storage
from bot.services import compose
from bot.settings import Settings
from tests.harness import BotHarness

REDIS_URL = "redis://127.0.0.1:6379/3"
ANN = 1001


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    await client.ping()  # Redis is part of the stack (.ci/run starts it): no Redis is a failure, not a skip
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def _worker(harness: BotHarness, settings: Settings, redis: Redis):  # type: ignore[no-untyped-def]
    storage, isolation = make_fsm_storage(settings)
    return compose(
        settings,
        harness.services.program,
        harness.sessions,
        harness.bot,
        clock=harness.clock,
        storage=storage,
        events_isolation=isolation,
        seen_updates=RedisSeenUpdates(redis),
    ).dispatcher


async def test_a_conversation_started_on_one_worker_continues_on_another(harness: BotHarness, redis: Redis) -> None:
    settings = harness.services.settings.model_copy(update={"redis_url": REDIS_URL})
    one, two = await _worker(harness, settings, redis), await _worker(harness, settings, redis)
    ann = harness.user(ANN, "Ann")
    harness.dp = one
    await harness.send(ann, "/start")
    await harness.send(ann, "/profile")
    calls = await harness.press(ann, "🎂 Set birthday")  # worker one now waits for a date
    assert "When is your birthday?" in harness.texts(calls, ANN)[-1]
    assert await redis.keys("fsm:*"), "the state lives in Redis"
    harness.dp = two  # the next update lands on the other worker
    calls = await harness.send(ann, "07-14")
    assert "Birthday saved: 07-14" in harness.texts(calls, ANN)[-1]
    member = await harness.member(ANN)
    assert member is not None and (member.birth_month, member.birth_day) == (7, 14)
    # The key builder keeps the destiny in the key, so other FSM destinies could never collide with it.
    assert all(b":default:" in key for key in await redis.keys("fsm:*"))
    for dp in (one, two):
        await dp.storage.close()
        await dp.fsm.events_isolation.close()


async def test_an_update_handled_by_one_worker_is_skipped_by_the_other(harness: BotHarness, redis: Redis) -> None:
    settings = harness.services.settings.model_copy(update={"redis_url": REDIS_URL})
    one, two = await _worker(harness, settings, redis), await _worker(harness, settings, redis)
    update = harness.tg.message_update(harness.user(ANN, "Ann"), "/start")
    harness.dp = one
    assert harness.texts(await harness.feed(update), ANN)
    harness.dp = two
    assert await harness.feed(update) == [], "the redelivery to another worker does nothing"
    for dp in (one, two):
        await dp.storage.close()
        await dp.fsm.events_isolation.close()
