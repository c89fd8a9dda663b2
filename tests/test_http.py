"""The HTTP server every role runs: health, readiness, metrics; settings for it and JSON logs."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.logs import JsonFormatter
from bot.services import Services
from bot.settings import Settings
from tests.harness import BotHarness
from tests.test_run import ROOT, _env
from web.server import make_http_app


def deps_of(harness: BotHarness, redis: object | None = None, **settings: object) -> Services:
    """The harness's services with other settings (and Redis), as ``loyalty run`` hands them to the HTTP server."""
    config = Settings(bot_token=harness.tg.token, telegram_api_url=harness.tg.base_url, _env_file=None, **settings)  # type: ignore[call-arg, arg-type]
    services = copy.copy(harness.services)
    services.settings, services.redis = config, redis
    return services


@pytest.fixture
async def client(harness: BotHarness) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_http_app(deps_of(harness), serve_updates=True))) as client:
        yield client


async def test_healthz_answers_while_the_process_is_up(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client: TestClient) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "checks": {"database": "ok"}}


class _DeadRedis:
    async def ping(self) -> bool:
        raise ConnectionError("connection refused")


class _SlowRedis:
    async def ping(self) -> bool:
        await asyncio.sleep(60)
        return True


@pytest.mark.parametrize("redis", [_DeadRedis(), _SlowRedis()], ids=["refused", "hangs"])
async def test_readyz_is_503_when_redis_does_not_answer(
    harness: BotHarness, redis: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("web.server.READY_TIMEOUT", 0.2)
    async with TestClient(TestServer(make_http_app(deps_of(harness, redis), serve_updates=False))) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        assert await response.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "unavailable"}}


async def test_readyz_is_503_when_the_database_is_gone(harness: BotHarness) -> None:
    from storage.database import make_engine, make_session_factory

    dead = make_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    deps = deps_of(harness)
    deps.sessions = make_session_factory(dead)
    async with TestClient(TestServer(make_http_app(deps, serve_updates=False))) as client:
        response = await client.get("/readyz")
        assert response.status == 503 and (await response.json())["checks"] == {"database": "unavailable"}
        assert (await client.get("/healthz")).status == 200  # up, only not ready
    await dead.dispose()


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


async def test_metrics_count_updates_messages_errors_and_queue(
    client: TestClient, harness: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.runner  # noqa: F401  # what `loyalty run` imports registers every counter, the scheduler's too

    before = await (await client.get("/metrics")).text()
    await harness.send(harness.user(1001, "Ann"), "/start")
    await harness.send(harness.user(1001, "Ann"), "/balance")

    # A handler that raises is counted (the errors router still apologises to the member).
    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("handlers.account.summary", boom)
    await harness.send(harness.user(1001, "Ann"), "/balance")
    response = await client.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    after = await response.text()
    assert (
        _sample(after, "loyalty_updates_total", type="message")
        - _sample(before, "loyalty_updates_total", type="message")
        == 3
    )
    assert _sample(after, "loyalty_messages_sent_total", method="SendMessage") > _sample(
        before, "loyalty_messages_sent_total", method="SendMessage"
    )
    assert (
        _sample(after, "loyalty_handler_errors_total", type="message")
        - _sample(before, "loyalty_handler_errors_total", type="message")
        == 1
    )
    assert _sample(after, "loyalty_broadcast_queue_depth") == 0
    for name in ("loyalty_telegram_429_total", "loyalty_job_runs_total", "loyalty_update_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in after


async def test_429s_are_counted(harness: BotHarness) -> None:
    from aiogram.exceptions import TelegramRetryAfter

    from bot.metrics import RATE_LIMITED

    before = RATE_LIMITED.labels("SendMessage")._value.get()
    harness.tg.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    with pytest.raises(TelegramRetryAfter):
        await harness.bot.send_message(1001, "hi")
    assert RATE_LIMITED.labels("SendMessage")._value.get() == before + 1
    harness.tg.clear_faults()


async def test_job_runs_are_counted() -> None:
    from datetime import UTC, datetime

    from scheduler.jobs import JOB_RUNS, counted_job

    async def ok(now: datetime) -> int:
        return 3

    async def fails(now: datetime) -> int:
        raise RuntimeError("down")

    before = JOB_RUNS.labels("t-ok", "ok")._value.get(), JOB_RUNS.labels("t-fail", "error")._value.get()
    assert await counted_job("t-ok", ok)(datetime.now(UTC)) == 3
    with pytest.raises(RuntimeError):
        await counted_job("t-fail", fails)(datetime.now(UTC))
    assert (JOB_RUNS.labels("t-ok", "ok")._value.get(), JOB_RUNS.labels("t-fail", "error")._value.get()) == (
        before[0] + 1,
        before[1] + 1,
    )


def test_json_log_lines() -> None:
    record = logging.LogRecord("bot.x", logging.WARNING, __file__, 1, "member %s: %s", (7, "café"), None)
    record.update_id = 42
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING" and line["logger"] == "bot.x" and line["message"] == "member 7: café"
    assert line["update_id"] == 42 and "ValueError: bad" in line["exception"] and line["time"].endswith("+00:00")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LOYALTY_HTTP_PORT": "70000"}, "LOYALTY_HTTP_PORT"),
        ({"LOYALTY_LOG_FORMAT": "xml"}, "LOYALTY_LOG_FORMAT"),
        ({"LOYALTY_WEBHOOK_URL": "https://bot.example.com/tg"}, "LOYALTY_WEBHOOK_SECRET"),
        ({"LOYALTY_WEBHOOK_URL": "not a url", "LOYALTY_WEBHOOK_SECRET": "s3cret"}, "LOYALTY_WEBHOOK_URL"),
        ({"LOYALTY_API_TOKENS": "short"}, "LOYALTY_API_TOKENS"),
    ],
)
async def test_a_bad_setting_stops_start_up_naming_it(env: dict[str, str], named: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        cwd=ROOT,
        env=_env(LOYALTY_BOT_TOKEN="1:abc", PYTHONPATH=str(ROOT), **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    lines = stderr.decode().strip().splitlines()
    assert process.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {named}:"), lines
