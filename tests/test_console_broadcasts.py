"""The console's Broadcasts over HTTP: a broadcast composed in the console reaches members exactly as one composed in
the chat; admins only, checked on the server; the audience follows the filters; a create made once per key;
pause / resume / cancel through the chat's own function; every change audited with who; bad input changes nothing."""

from __future__ import annotations

import asyncio
import base64
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlmodel import col

from loyalty.program import Program
from notifications.broadcasting import Broadcaster, RateLimiter
from storage.models import AuditLog, Broadcast, Delivery
from tests.harness import ADMIN_ID, CASHIER_ID, BotHarness
from tests.test_broadcast import _until_delivered as until_delivered
from tests.test_miniapp import MEMBER_ID, auth, join, services_with_app
from web.server import make_http_app

ADMIN = {"first_name": "Ada"}


def _png(width: int = 64, height: int = 40) -> bytes:
    """A real PNG (an orange rectangle), so a browser can show it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xf0\x90\x30" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = _png()
MEMBERS = {2001: "en", 2002: "zh-hans", 2003: "zh-hant"}


@pytest.fixture
async def app(harness: BotHarness) -> AsyncIterator[TestClient]:
    server = TestServer(make_http_app(services_with_app(harness), serve_updates=True))
    async with TestClient(server) as client:
        yield client


def _broadcaster(harness: BotHarness) -> Broadcaster:
    broadcaster: Broadcaster = harness.dp["broadcaster"]
    return broadcaster


async def _sent(harness: BotHarness) -> None:
    task = _broadcaster(harness).task
    assert task is not None
    await asyncio.wait_for(task, 30)


async def _join_all(harness: BotHarness) -> None:
    for tid, language in MEMBERS.items():
        await join(harness, tid, f"M{tid}", language)


async def _count(harness: BotHarness, model: Any) -> int:
    async with harness.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(model))).scalar_one())


async def _audit(harness: BotHarness) -> list[tuple[int, str]]:
    async with harness.sessions() as session:
        rows = (await session.execute(select(AuditLog).order_by(col(AuditLog.id)))).scalars()
        return [(row.actor_id, row.action) for row in rows]


def _body(key: str = "create-0123456789", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"key": key, "versions": {"default": {"text": "<b>Double points</b> this Friday!"}}}
    body.update(changes)
    return body


def _copies(harness: BotHarness, since: int) -> dict[int, dict[str, Any]]:
    """What each member's chat was sent since call ``since``: the request as the emulator received it (but the
    member's chat and the photo's id) and the photo's content."""
    out: dict[int, dict[str, Any]] = {}
    for call in harness.tg.calls[since:]:
        chat = call.params.get("chat_id")
        if call.method in ("sendMessage", "sendPhoto") and chat in MEMBERS:
            assert chat not in out, "a member was sent a broadcast twice"
            params = {k: v for k, v in call.params.items() if k not in ("chat_id", "photo")}
            photo = call.params.get("photo")
            out[int(chat)] = {
                "method": call.method,
                "params": params,
                "photo": harness.tg.file(photo) if isinstance(photo, str) else None,
                "ok": call.ok,
            }
    return out


async def test_a_broadcast_composed_in_the_console_is_delivered_exactly_as_one_composed_in_chat(
    app: TestClient, harness: BotHarness
) -> None:
    await _join_all(harness)
    # In the chat: a photo with a formatted caption and a button line, and a version in Simplified Chinese.
    admin = harness.user(ADMIN_ID, "Ada")
    await harness.send(admin, "/broadcast")
    caption = "Double points this Friday!\nbutton: Order now | https://example.com/order"
    bold = [{"type": "bold", "offset": 0, "length": 13}, {"type": "italic", "offset": 14, "length": 4}]
    await harness.feed(
        harness.tg.message_update(admin, None, photo=harness.tg.photo(PNG), caption=caption, caption_entities=bold)
    )
    await harness.press(admin, "➕ Version in 简体中文")
    spoiler = [
        {"type": "spoiler", "offset": 0, "length": 4},
        {"type": "text_link", "offset": 5, "length": 2, "url": "https://example.com/zh"},
    ]
    await harness.feed(harness.tg.message_update(admin, "双倍积分 详情 周五", entities=spoiler))
    await harness.press(admin, "Next: choose members ▶")
    await harness.press(admin, "All members")
    chat_from = len(harness.tg.calls)
    await harness.press(admin, "🚀 Send now")
    await _sent(harness)
    chat = _copies(harness, chat_from)

    # In the console: the same photo uploaded from the phone, the same formatting typed as HTML.
    headers = auth(harness, ADMIN_ID, **ADMIN)
    uploaded = await app.post(
        "/app/api/console/broadcast/photo", json={"data": base64.b64encode(PNG).decode()}, headers=headers
    )
    assert uploaded.status == 201, await uploaded.text()
    photo = (await uploaded.json())["photo"]
    assert harness.tg.file(photo) == PNG
    body = _body(
        versions={
            "default": {
                "text": "<b>Double points</b> <i>this</i> Friday!",
                "photo": photo,
                "button": {"text": "Order now", "url": "https://example.com/order"},
            },
            "zh-Hans": {"text": '<tg-spoiler>双倍积分</tg-spoiler> <a href="https://example.com/zh">详情</a> 周五'},
        }
    )
    console_from = len(harness.tg.calls)
    created = await app.post("/app/api/console/broadcast/create", json=body, headers=headers)
    assert created.status == 201, await created.text()
    assert (await created.json())["total"] == len(MEMBERS)
    await _sent(harness)
    console = _copies(harness, console_from)

    assert set(chat) == set(console) == set(MEMBERS)
    assert console == chat
    assert chat[2001]["method"] == "sendPhoto" and chat[2001]["photo"] == PNG and chat[2001]["ok"]
    # Traditional Chinese has no version of its own: the default, with the stop button in their language.
    assert chat[2003]["params"]["caption"] == chat[2001]["params"]["caption"] and chat[2003]["photo"] == PNG
    assert chat[2002]["method"] == "sendMessage" and "<tg-spoiler>双倍积分</tg-spoiler>" in chat[2002]["params"]["text"]
    harness.tg.assert_clean()


async def test_members_and_cashiers_are_refused_everything(app: TestClient, harness: BotHarness) -> None:
    await join(harness)
    await join(harness, CASHIER_ID, "Cass")
    for who in (MEMBER_ID, CASHIER_ID):
        headers = auth(harness, who)
        for path in (
            "console/broadcasts",
            "console/broadcast?id=1",
            "console/broadcast/new",
            "console/broadcast/audience?lang=en",
        ):
            for kind in ("api", "view"):
                response = await app.get(f"/app/{kind}/{path}", headers=headers)
                assert response.status == 403, (who, kind, path)
        for path, body in (
            ("console/broadcast/create", _body()),
            ("console/broadcast/photo", {"data": base64.b64encode(PNG).decode()}),
            ("console/broadcast/pause", {"id": 1}),
            ("console/broadcast/resume", {"id": 1}),
            ("console/broadcast/cancel", {"id": 1}),
        ):
            response = await app.post(f"/app/api/{path}", json=body, headers=headers)
            assert response.status == 403, (who, path)
            assert (await response.json())["error"]["code"] == "forbidden"
    assert await _count(harness, Broadcast) == 0
    assert await _audit(harness) == []
    assert not harness.tg.calls_of("sendPhoto")


async def test_a_create_sent_twice_makes_one_broadcast_and_is_audited(app: TestClient, harness: BotHarness) -> None:
    await _join_all(harness)
    headers = auth(harness, ADMIN_ID, **ADMIN)
    first = await app.post("/app/api/console/broadcast/create", json=_body(), headers=headers)
    assert first.status == 201, await first.text()
    made = await first.json()
    assert made["replayed"] is False and "Broadcast #1 to 3 members is being sent" in made["message"]
    again = await app.post("/app/api/console/broadcast/create", json=_body(), headers=headers)
    assert again.status == 200 and (await again.json())["replayed"] is True
    await _sent(harness)
    assert await _count(harness, Broadcast) == 1 and await _count(harness, Delivery) == len(MEMBERS)
    for tid in MEMBERS:  # each member got it once
        assert len([m for m in harness.tg.messages(tid) if "Double points" in str(m.get("text"))]) == 1
    assert await _audit(harness) == [(ADMIN_ID, "broadcast")]
    # Another submission (another key) is another broadcast.
    other = await app.post("/app/api/console/broadcast/create", json=_body("create-another-one"), headers=headers)
    assert other.status == 201 and (await other.json())["id"] == 2


async def test_the_audience_follows_the_filters(app: TestClient, harness: BotHarness) -> None:
    await _join_all(harness)
    headers = auth(harness, ADMIN_ID, **ADMIN)

    async def total(query: str) -> int:
        response = await app.get(f"/app/api/console/broadcast/audience?{query}", headers=headers)
        assert response.status == 200, await response.text()
        return int((await response.json())["total"])

    assert await total("") == 3
    assert await total("lang=zh-Hans") == 1
    assert await total("lang=") == 3  # an empty field is no filter
    assert await total("points=1000000") == 0
    assert await total("birthday=1") == 0
    assert await total("inactive=30") == 0 and await total("active=30") == 3
    view = await app.get("/app/view/console/broadcast/audience?lang=en", headers=headers)
    assert view.status == 200 and "Audience: 1 member" in await view.text()
    for query, words in (
        ("points=lots", "Not a valid value: points=lots"),
        ("tier=Platinum", "Not a valid value"),
        ("lang=fr", "Not a valid value"),
        ("colour=red", "Unknown filter: colour=red"),
        ("inactive=0", "Not a valid value"),
    ):
        response = await app.get(f"/app/api/console/broadcast/audience?{query}", headers=headers)
        assert response.status == 400 and words in (await response.json())["error"]["message"], query
    compose = await app.get("/app/api/console/broadcast/new", headers=headers)
    assert compose.status == 200 and (await compose.json())["audience"]["total"] == 3


async def test_pause_resume_and_cancel_go_through_the_chats_function_and_are_audited(
    app: TestClient, harness: BotHarness
) -> None:
    for tid in range(2001, 2013):
        await join(harness, tid, f"M{tid}")
    broadcaster = _broadcaster(harness)
    broadcaster.limiter = RateLimiter(5)
    headers = auth(harness, ADMIN_ID, **ADMIN)
    created = await app.post("/app/api/console/broadcast/create", json=_body(), headers=headers)
    assert created.status == 201
    await until_delivered(harness, 1)
    paused = await app.post("/app/api/console/broadcast/pause", json={"id": 1}, headers=headers)
    assert paused.status == 200 and "is now paused" in (await paused.json())["message"]
    await _sent(harness)
    progress = await (await app.get("/app/api/console/broadcast?id=1", headers=headers)).json()
    assert progress["status"] == "paused" and progress["can_resume"] and progress["remaining"] > 0
    again = await app.post("/app/api/console/broadcast/pause", json={"id": 1}, headers=headers)
    assert again.status == 409 and "cannot be changed that way now" in (await again.json())["error"]["message"]

    broadcaster.limiter = RateLimiter(50)
    resumed = await app.post("/app/api/console/broadcast/resume", json={"id": 1}, headers=headers)
    assert resumed.status == 200
    await _sent(harness)
    progress = await (await app.get("/app/api/console/broadcast?id=1", headers=headers)).json()
    assert progress["status"] == "done" and progress["sent"] == progress["total"] == 12
    assert not (progress["can_pause"] or progress["can_resume"] or progress["can_cancel"])
    page = await app.get("/app/view/console/broadcast?id=1", headers=headers)
    assert page.status == 200 and "<b>Double points</b> this Friday!" in await page.text()
    listed = await (await app.get("/app/api/console/broadcasts", headers=headers)).json()
    assert [(b["id"], b["status"], b["sent"]) for b in listed["broadcasts"]] == [(1, "done", 12)]
    cancelled = await app.post("/app/api/console/broadcast/cancel", json={"id": 1}, headers=headers)
    assert cancelled.status == 409  # it is over

    assert await _audit(harness) == [
        (ADMIN_ID, "broadcast"),
        (ADMIN_ID, "broadcast_pause"),
        (ADMIN_ID, "broadcast_resume"),
    ]


async def test_a_scheduled_broadcast_waits_and_can_be_cancelled(
    app: TestClient, harness: BotHarness, program: Program
) -> None:
    await _join_all(harness)
    headers = auth(harness, ADMIN_ID, **ADMIN)
    local = (harness.clock() + timedelta(days=1)).astimezone(program.tz).strftime("%Y-%m-%dT%H:%M")
    created = await app.post("/app/api/console/broadcast/create", json=_body(send_at=local), headers=headers)
    assert created.status == 201, await created.text()
    assert "is scheduled for" in (await created.json())["message"]
    progress = await (await app.get("/app/api/console/broadcast?id=1", headers=headers)).json()
    assert progress["status"] == "scheduled" and progress["pace"].startswith("Starts")
    await _broadcaster(harness).tick(harness.bot, harness.clock())
    await _sent(harness)
    assert not any(harness.tg.messages(tid) and "Double" in str(harness.tg.messages(tid)[-1]) for tid in MEMBERS)
    cancelled = await app.post("/app/api/console/broadcast/cancel", json={"id": 1}, headers=headers)
    assert cancelled.status == 200
    harness.clock.advance(days=1, minutes=1)
    await _broadcaster(harness).tick(harness.bot, harness.clock())
    await _sent(harness)
    assert not any("Double" in str(m) for tid in MEMBERS for m in harness.tg.messages(tid))
    assert [action for _, action in await _audit(harness)] == ["broadcast", "broadcast_cancel"]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"versions": {"default": {"text": "  "}}}, "The message is empty"),
        ({"versions": {"default": {"text": "<b>Bold"}}}, "is never closed"),
        ({"versions": {"default": {"text": "<script>alert(1)</script>"}}}, "cannot show the formatting <script>"),
        ({"versions": {"default": {"text": '<a href="javascript:alert(1)">x</a>'}}}, "cannot show the formatting"),
        ({"versions": {"default": {"text": "x" * 4097}}}, "at most 4096 characters"),
        ({"versions": {"default": {"text": "x" * 1025, "photo": "PhotoSize-1-abc"}}}, "at most 1024"),
        ({"versions": {"default": {"text": "x", "button": {"text": "Go", "url": "javascript:x"}}}}, "link"),
        ({"versions": {"default": {"text": "x", "button": {"text": "", "url": "https://x.com"}}}}, "label"),
        ({"versions": {"default": {"text": "x", "button": {"text": "L" * 41, "url": "https://x.com"}}}}, "label"),
        ({"versions": {"default": {"text": "x"}, "zh-Hans": {"text": "<i>x"}}}, "简体中文: The formatting tag"),
        ({"versions": {"default": {"text": "x", "photo": "not a file id!"}}}, "not right"),
        ({"versions": {"zh-Hans": {"text": "x"}}}, "not right"),
        ({"versions": {"default": {"text": "x"}, "fr": {"text": "x"}}}, "not right"),
        ({"filters": {"lang": "fr"}}, "Not a valid value"),
        ({"filters": {"colour": "red"}}, "Unknown filter"),
        ({"send_at": "2020-01-01T10:00"}, "That time has passed"),
        ({"send_at": "tomorrow"}, "pick a date and a time"),
        ({"key": "bad key"}, "not right"),
    ],
)
async def test_bad_input_is_explained_and_changes_nothing(
    app: TestClient, harness: BotHarness, changes: dict[str, Any], words: str
) -> None:
    await _join_all(harness)
    headers = auth(harness, ADMIN_ID, **ADMIN)
    response = await app.post("/app/api/console/broadcast/create", json=_body(**changes), headers=headers)
    assert response.status == 400, await response.text()
    assert words in (await response.json())["error"]["message"]
    assert await _count(harness, Broadcast) == 0 and await _audit(harness) == []


async def test_bad_photos_and_ids_are_refused(app: TestClient, harness: BotHarness) -> None:
    await join(harness, ADMIN_ID, "Ada")
    headers = auth(harness, ADMIN_ID, **ADMIN)
    for data, status in (
        ("not base64!", 400),
        (base64.b64encode(b"GIF89a" + bytes(100)).decode(), 400),
        (base64.b64encode(b"<svg onload=alert(1)>").decode(), 400),
    ):
        response = await app.post("/app/api/console/broadcast/photo", json={"data": data}, headers=headers)
        assert response.status == status
    large = PNG + bytes(3 * 1024 * 1024)  # a phone's photo: several times the app's usual body limit
    response = await app.post(
        "/app/api/console/broadcast/photo", json={"data": base64.b64encode(large).decode()}, headers=headers
    )
    assert response.status == 201, await response.text()
    assert harness.tg.file((await response.json())["photo"]) == large
    too_big = base64.b64encode(PNG + bytes(5 * 1024 * 1024)).decode()
    response = await app.post("/app/api/console/broadcast/photo", json={"data": too_big}, headers=headers)
    assert response.status in (400, 413)
    assert len(harness.tg.calls_of("sendPhoto")) == 1  # only the good one went to Telegram
    for query in ("id=abc", "id=", "id=99"):
        response = await app.get(f"/app/api/console/broadcast?{query}", headers=headers)
        assert response.status in (400, 404), query
    for path in ("pause", "resume", "cancel"):
        response = await app.post(f"/app/api/console/broadcast/{path}", json={"id": 99}, headers=headers)
        assert response.status == 409
        response = await app.post(f"/app/api/console/broadcast/{path}", json={"id": "x"}, headers=headers)
        assert response.status == 400
    assert await _audit(harness) == []
