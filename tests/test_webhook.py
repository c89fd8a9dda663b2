"""Webhook mode: the secret header is checked, a redelivered update changes nothing, and only the scheduler's
process (role all or scheduler) registers the webhook; no worker deletes it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from bot.dedupe import MemorySeenUpdates
from bot.services import compose
from emulator import FakeTelegram
from handlers import account
from storage.models import LedgerEntry, Member, Purchase
from tests.harness import CASHIER_ID, BotHarness
from tests.test_http import deps_of
from tests.test_run import ROOT, _env, _wait_for
from web.server import make_http_app

URL = "https://bot.example.com/tg/hook"
SECRET = "webhook-s3cret_token"
HEADER = "X-Telegram-Bot-Api-Secret-Token"


@pytest.fixture
async def hook(harness: BotHarness) -> AsyncIterator[TestClient]:
    # The dispatcher as ``loyalty run`` builds it: with the redelivery guard.
    harness.services = compose(
        harness.services.settings,
        harness.services.program,
        harness.sessions,
        harness.bot,
        clock=harness.clock,
        seen_updates=MemorySeenUpdates(),
    )
    harness.dp = harness.services.dispatcher
    deps = deps_of(harness, webhook_url=URL, webhook_secret=SECRET, cashier_ids=frozenset({CASHIER_ID}))
    async with TestClient(TestServer(make_http_app(deps, serve_updates=True))) as client:
        yield client


async def _counts(harness: BotHarness) -> tuple[int, ...]:
    async with harness.sessions() as session:
        return tuple(
            [
                int((await session.execute(select(func.count()).select_from(model))).scalar_one())
                for model in (Member, Purchase, LedgerEntry)
            ]
        )


@pytest.mark.parametrize(
    "headers",
    [{}, {HEADER: "wrong"}, {HEADER: SECRET[:-1]}, {HEADER: "sécret-ключ-秘密"}],
    ids=["none", "wrong", "prefix", "non-ascii"],
)
async def test_an_update_without_the_secret_is_refused_and_changes_nothing(
    hook: TestClient, harness: BotHarness, headers: dict[str, str]
) -> None:
    before = await _counts(harness)
    sent = len(harness.tg.calls)
    response = await hook.post(
        "/tg/hook", json=harness.tg.message_update(harness.user(1001, "Ann"), "/start"), headers=headers
    )
    assert response.status == 401
    assert await _counts(harness) == before and len(harness.tg.calls) == sent


async def test_an_update_with_the_secret_is_handled(hook: TestClient, harness: BotHarness) -> None:
    response = await hook.post(
        "/tg/hook", json=harness.tg.message_update(harness.user(1001, "Ann"), "/start"), headers={HEADER: SECRET}
    )
    assert response.status == 200
    assert "Welcome to Bean There Coffee, Ann!" in (harness.tg.last_text(1001) or "")
    assert await harness.member(1001) is not None


async def test_a_redelivered_update_changes_nothing(hook: TestClient, harness: BotHarness) -> None:
    await hook.post(
        "/tg/hook", json=harness.tg.message_update(harness.user(1001, "Ann"), "/start"), headers={HEADER: SECRET}
    )
    member = await harness.member(1001)
    assert member is not None
    update = harness.tg.message_update(harness.user(CASHIER_ID, "Cass"), f"/purchase {member.code} 30 coffee")
    assert (await hook.post("/tg/hook", json=update, headers={HEADER: SECRET})).status == 200
    state, sent = await _counts(harness), len(harness.tg.calls)
    points = (await harness.member(1001)).points  # type: ignore[union-attr]
    for _ in range(2):  # Telegram did not hear our 200 (say): it sends the same update again
        assert (await hook.post("/tg/hook", json=update, headers={HEADER: SECRET})).status == 200
    assert await _counts(harness) == state
    assert (await harness.member(1001)).points == points  # type: ignore[union-attr]
    assert len(harness.tg.calls) == sent, "nothing is said twice either"


async def test_beyond_its_cap_a_worker_refuses_updates_at_once_and_handles_them_when_delivered_again(
    harness: BotHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.services = compose(
        harness.services.settings,
        harness.services.program,
        harness.sessions,
        harness.bot,
        clock=harness.clock,
        seen_updates=MemorySeenUpdates(),
    )
    harness.dp = harness.services.dispatcher
    deps = deps_of(harness, webhook_url=URL, webhook_secret=SECRET, max_updates_in_flight=2)
    async with TestClient(TestServer(make_http_app(deps, serve_updates=True))) as hook:
        for uid, name in ((1001, "Ann"), (1002, "Ben"), (1003, "Cy")):
            await hook.post(
                "/tg/hook", json=harness.tg.message_update(harness.user(uid, name), "/start"), headers={HEADER: SECRET}
            )
        release = asyncio.Event()
        real_summary = account.summary

        async def slow_summary(*args: Any, **kwargs: Any) -> Any:
            await release.wait()  # the database is slow today
            return await real_summary(*args, **kwargs)

        monkeypatch.setattr(account, "summary", slow_summary)
        held = [
            asyncio.create_task(
                hook.post(
                    "/tg/hook",
                    json=harness.tg.message_update(harness.user(uid, name), "/balance"),
                    headers={HEADER: SECRET},
                )
            )
            for uid, name in ((1001, "Ann"), (1002, "Ben"))
        ]
        await asyncio.sleep(0.2)
        third = harness.tg.message_update(harness.user(1003, "Cy"), "/balance")
        sent, refusals = len(harness.tg.calls), REGISTRY.get_sample_value("loyalty_webhook_refused_total") or 0
        refused = await asyncio.wait_for(hook.post("/tg/hook", json=third, headers={HEADER: SECRET}), timeout=1)
        assert refused.status == 503, "two in flight: the third is refused at once"
        assert len(harness.tg.calls) == sent, "and nothing was done for it"
        release.set()
        assert [r.status for r in await asyncio.gather(*held)] == [200, 200]
        calls_before = len(harness.tg.calls)
        assert (await hook.post("/tg/hook", json=third, headers={HEADER: SECRET})).status == 200  # Telegram again
        assert harness.texts(harness.tg.calls[calls_before:], 1003), "delivered again, it is handled"
        assert REGISTRY.get_sample_value("loyalty_webhook_refused_total") == refusals + 1, "counted for /metrics"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start(tg: FakeTelegram, tmp_path: Path, role: str, port: int, db: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        "--role",
        role,
        cwd=tmp_path,
        env=_env(
            LOYALTY_BOT_TOKEN=tg.token,
            LOYALTY_TELEGRAM_API_URL=tg.base_url,
            LOYALTY_DATABASE_URL=db,
            LOYALTY_WEBHOOK_URL=f"https://bot.example.com/hook/{role}",
            LOYALTY_WEBHOOK_SECRET=SECRET,
            LOYALTY_HTTP_HOST="127.0.0.1",
            LOYALTY_HTTP_PORT=str(port),
            PYTHONPATH=str(ROOT),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _until_up(port: int) -> None:
    async with asyncio.timeout(60), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def _stop(process: asyncio.subprocess.Process) -> str:
    process.send_signal(signal.SIGINT)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr, stderr.decode()
    return stderr.decode()


async def test_bot_workers_serve_the_webhook_and_only_the_all_role_registers_it(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'hook.db'}"
    async with FakeTelegram(token="4244:HOOK-TEST") as tg:
        # A bot worker: serves updates at the URL's path, never polls, never sets or deletes the webhook.
        port = _free_port()
        worker = await _start(tg, tmp_path, "bot", port, db)
        try:
            await _until_up(port)
            update: dict[str, Any] = tg.message_update(tg.user(501, "Ann"), "/start")
            async with aiohttp.ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{port}/hook/bot", json=update) as refused:
                    assert refused.status == 401
                async with http.post(
                    f"http://127.0.0.1:{port}/hook/bot", json=update, headers={HEADER: SECRET}
                ) as accepted:
                    assert accepted.status == 200
            assert "Welcome to Bean There Coffee, Ann!" in (tg.last_text(501) or "")
        finally:
            await _stop(worker)
        assert not tg.calls_of("getUpdates") and not tg.calls_of("setWebhook") and not tg.calls_of("deleteWebhook")

        # The single-process role: registers the webhook with its secret, and leaves it in place on the way out.
        port = _free_port()
        everything = await _start(tg, tmp_path, "all", port, db)
        try:
            await _wait_for(tg, lambda: tg.calls_of("setWebhook"))
            await _until_up(port)
        finally:
            await _stop(everything)
        [registered] = tg.calls_of("setWebhook")
        assert registered.params["url"] == "https://bot.example.com/hook/all"
        assert registered.params["secret_token"] == SECRET
        assert "message" in registered.params["allowed_updates"]
        assert not tg.calls_of("deleteWebhook") and not tg.calls_of("getUpdates")
        assert tg.webhook_url == "https://bot.example.com/hook/all"
        tg.assert_clean()


async def test_two_worker_processes_on_one_database_and_redis_share_a_conversation(
    tmp_path: Path, database_url: str
) -> None:
    """The issue's deployment in small: two `loyalty run --role bot` processes behind one webhook URL, one
    database, one Redis. The member's updates alternate between them; the conversation goes on regardless."""
    from redis.asyncio import Redis

    redis_url = os.environ.get("LOYALTY_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")  # flushed: see test_redis
    redis = Redis.from_url(redis_url)
    await redis.flushdb()
    async with FakeTelegram(token="4245:TWO-WORKERS") as tg:
        ports = [_free_port(), _free_port()]
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.cli",
                "run",
                "--role",
                "bot",
                cwd=tmp_path,
                env=_env(
                    LOYALTY_BOT_TOKEN=tg.token,
                    LOYALTY_TELEGRAM_API_URL=tg.base_url,
                    LOYALTY_DATABASE_URL=database_url,
                    LOYALTY_REDIS_URL=redis_url,
                    LOYALTY_WEBHOOK_URL=URL,
                    LOYALTY_WEBHOOK_SECRET=SECRET,
                    LOYALTY_HTTP_HOST="127.0.0.1",
                    LOYALTY_HTTP_PORT=str(port),
                    PYTHONPATH=str(ROOT),
                ),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for port in ports
        ]
        try:
            for port in ports:
                await _until_up(port)
            ann = tg.user(601, "Ann")
            async with aiohttp.ClientSession() as http:

                async def deliver(update: dict[str, Any], worker: int) -> None:
                    async with http.post(
                        f"http://127.0.0.1:{ports[worker]}/tg/hook", json=update, headers={HEADER: SECRET}
                    ) as response:
                        assert response.status == 200

                await deliver(tg.message_update(ann, "/start"), 0)
                await deliver(tg.message_update(ann, "/profile"), 1)
                profile = tg.last_message(601)
                assert profile is not None
                button = next(
                    b
                    for row in profile["reply_markup"]["inline_keyboard"]
                    for b in row
                    if b["text"] == "🎂 Set birthday"
                )
                await deliver(tg.callback_update(ann, profile, button["callback_data"]), 0)
                assert "When is your birthday?" in (tg.last_text(601) or "")
                birthday = tg.message_update(ann, "07-14")
                await deliver(birthday, 1)  # the other process takes the answer
                assert "Your birthday: 14 July. Is that right?" in (tg.last_text(601) or "")
                replies = len(tg.messages(601))
                await deliver(birthday, 0)  # Telegram redelivers it to the first: nothing happens
                assert len(tg.messages(601)) == replies
                question = tg.last_message(601)
                assert question is not None
                confirm = next(
                    b for row in question["reply_markup"]["inline_keyboard"] for b in row if b["text"] == "✅ Confirm"
                )
                await deliver(tg.callback_update(ann, question, confirm["callback_data"]), 0)  # and back again
                assert "Birthday saved: 14 July" in (tg.last_text(601) or "")
        finally:
            for worker in workers:
                await _stop(worker)
            await redis.flushdb()
            await redis.aclose()
        tg.assert_clean()


async def test_a_database_that_never_answers_fails_the_update_fast_and_telegram_redelivers(
    harness: BotHarness,
) -> None:
    """PostgreSQL behind a proxy that accepts connections and then says nothing: the update fails within the
    connect timeout, the member hears the apology, and the webhook answers 5xx so Telegram delivers it again."""
    import asyncio
    import time

    from storage.database import make_engine, make_session_factory

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, reads, never answers

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test", connect_timeout=0.5)
    try:
        harness.services = compose(
            harness.services.settings,
            harness.services.program,
            make_session_factory(engine),
            harness.bot,
            clock=harness.clock,
            seen_updates=MemorySeenUpdates(),
        )
        harness.dp = harness.services.dispatcher
        deps = deps_of(harness, webhook_url=URL, webhook_secret=SECRET)
        async with TestClient(TestServer(make_http_app(deps, serve_updates=True))) as client:
            update = harness.tg.message_update(harness.user(1001, "Ann"), "/balance")
            for _ in range(2):  # Telegram's redelivery is not skipped as already handled
                started = time.monotonic()
                response = await client.post("/tg/hook", json=update, headers={HEADER: SECRET})
                assert response.status >= 500
                assert time.monotonic() - started < 10
                assert harness.tg.last_text(1001) == "Sorry, something went wrong. Please try again in a moment."
            assert len(harness.tg.sent(1001)) == 2
    finally:
        server.close()
        await engine.dispose()
