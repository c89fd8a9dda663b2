"""The Bot API emulator: spec validation, HTML parsing and the fake server driven by a real aiogram Bot."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    BufferedInputFile,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    KeyboardButton,
    LabeledPrice,
    LinkPreviewOptions,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from emulator import EntityParseError, FakeBotAPI, FakeTelegram, html_to_plain, load_spec, parse_html
from emulator.spec import validate_request

USER_ID = 501


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def _make_bot(server: FakeTelegram, parse_mode: str | None = "HTML") -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(server.base_url))
    return Bot(server.token, session=session, default=DefaultBotProperties(parse_mode=parse_mode))


async def _close(bot: Bot) -> None:
    # AiohttpSession.close() sleeps 250 ms for TLS shutdown; there is no TLS here and the suite must stay fast.
    raw = bot.session._session  # type: ignore[attr-defined]
    if raw is not None:
        await raw.close()


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = _make_bot(fake)
    yield bot
    await _close(bot)


def _markup(*data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=d, callback_data=d) for d in data]])


# ------------------------------------------------------------------------------------------ html


@pytest.mark.parametrize(
    ("html", "plain"),
    [
        ("plain text", "plain text"),
        ("<b>bold</b> <strong>s</strong> <i>i</i> <em>e</em> <u>u</u> <ins>n</ins>", "bold s i e u n"),
        ("<s>a</s><strike>b</strike><del>c</del>", "abc"),
        ('<span class="tg-spoiler">x</span><tg-spoiler>y</tg-spoiler>', "xy"),
        ('<a href="https://example.com/?a=1&amp;b=2">link</a>', "link"),
        ('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>', "👍"),
        ('<pre><code class="language-python">x = 1 &lt; 2</code></pre>', "x = 1 < 2"),
        ("<blockquote expandable>q</blockquote><blockquote>r</blockquote>", "qr"),
        ("&lt;tag&gt; &amp; &quot;q&quot; &#65;&#x42;", '<tag> & "q" AB'),
        ("<B>upper</B>", "upper"),
        ("<b>a <i>nested <u>deep</u></i></b>", "a nested deep"),
        ("line1\nline2", "line1\nline2"),
    ],
)
def test_html_to_plain_accepts_telegram_html(html: str, plain: str) -> None:
    assert html_to_plain(html) == plain


@pytest.mark.parametrize(
    ("html", "message"),
    [
        ("<b>unclosed", 'Can\'t find end tag corresponding to start tag "b"'),
        ("a & b", 'Character "&" must be escaped'),
        ("fish&chips", 'Character "&" must be escaped'),
        ("&nbsp;", 'Character "&" must be escaped'),
        ("&amp", 'Character "&" must be escaped'),
        ("&#0;", "Invalid character reference"),
        ("<script>alert(1)</script>", 'Unsupported start tag "script"'),
        ("<br/>", 'Unsupported start tag "br"'),
        ("<b/>", 'Self-closing tag "b"'),
        ("a < b", 'Character "<" must be escaped'),
        ("a > b", 'Character ">" must be escaped'),
        ("<b", "Unclosed tag"),
        ("</b>", "Unexpected end tag"),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ("<tg-emoji>x</tg-emoji>", "Custom emoji identifier"),
        ("<!-- c -->", 'Character "<" must be escaped'),
    ],
)
def test_html_to_plain_rejects_malformed_html(html: str, message: str) -> None:
    with pytest.raises(EntityParseError, match=None) as info:
        html_to_plain(html)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value)


def test_html_error_offsets_are_utf8_bytes() -> None:
    with pytest.raises(EntityParseError, match="byte offset 5"):
        html_to_plain("привет"[:2] + "x<")  # 2 Cyrillic letters = 4 bytes, then "x"


def test_parse_html_entities_use_utf16_offsets() -> None:
    text, entities = parse_html(
        '👍 <b>bold</b> <a href="https://t.me/x">l</a> <pre><code class="language-py">c</code></pre>'
    )
    assert text == "👍 bold l c"
    assert entities == [
        {"type": "bold", "offset": 3, "length": 4},
        {"type": "text_link", "offset": 8, "length": 1, "url": "https://t.me/x"},
        {"type": "pre", "offset": 10, "length": 1, "language": "py"},
    ]


# ------------------------------------------------------------------------------------------ validator


def _form(**params: Any) -> dict[str, str]:
    """Encode params the way aiogram's form data does: JSON for non-strings."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}


def test_validator_accepts_typical_form_request() -> None:
    params = _form(
        chat_id=42,
        text="<b>Hi</b>",
        parse_mode="HTML",
        reply_markup={"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]},
        link_preview_options={"is_disabled": True},
        disable_notification=True,
    )
    assert validate_request("sendMessage", params, set()) == []
    assert validate_request("SENDMESSAGE", params, set()) == []  # method names are case-insensitive


def test_validator_accepts_json_values() -> None:
    params = {"chat_id": 42, "text": "hi", "reply_markup": {"remove_keyboard": True}}
    assert validate_request("sendMessage", params, set()) == []
    assert validate_request("sendMessage", {**params, "reply_markup": {"force_reply": True}}, set()) == []


def test_parse_request_decodes_form_values() -> None:
    params, errors = load_spec().parse_request(
        "getUpdates", {"offset": "7", "timeout": "2", "allowed_updates": '["message"]'}, set()
    )
    assert errors == []
    assert params == {"offset": 7, "timeout": 2, "allowed_updates": ["message"]}
    params, _ = load_spec().parse_request("sendMessage", {"chat_id": "@channel", "text": "123"}, set())
    assert params == {"chat_id": "@channel", "text": "123"}  # text stays a string even if it looks like JSON


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        ("sendMesage", {"chat_id": "1", "text": "x"}, 'method "sendMesage" not found'),
        ("sendMessage", {"chat_id": "1"}, "message text is empty"),
        ("sendMessage", {"text": "x"}, 'parameter "chat_id" is required'),
        ("sendMessage", {"chat_id": "1", "text": "x", "colour": "red"}, 'unknown parameter "colour"'),
        ("sendMessage", {"chat_id": "1", "text": "x", "disable_notification": "maybe"}, "expected Boolean"),
        ("sendMessage", {"chat_id": "1.5", "text": "x", "message_thread_id": "x"}, "expected Integer"),
        ("sendMessage", {"chat_id": "1", "text": "x", "reply_markup": '{"keyboard": "no"}'}, "reply_markup"),
        ("sendMessage", {"chat_id": "1", "text": "x", "parse_mode": "XML"}, 'unsupported parse_mode "XML"'),
        ("sendMessage", {"chat_id": "1", "text": "x" * 4097}, "message is too long"),
        ("sendMessage", {"chat_id": "1", "text": "<b></b>  ", "parse_mode": "HTML"}, "message text is empty"),
        ("sendPhoto", {"chat_id": "1", "photo": "attach://nope"}, "is not attached"),
        ("sendPhoto", {"chat_id": "1", "photo": "id", "caption": "c" * 1025}, "caption is too long"),
        ("answerCallbackQuery", {"callback_query_id": "1", "text": "t" * 201}, "longer than 200"),
        ("editMessageText", {"chat_id": "1", "text": "x"}, "message identifier is not specified"),
    ],
)
def test_validator_rejects(method: str, params: dict[str, Any], expected: str) -> None:
    errors = validate_request(method, params, set())
    assert any(expected in e for e in errors), errors


def test_validator_checks_inline_buttons() -> None:
    def errors_for(button: dict[str, Any]) -> list[str]:
        return validate_request(
            "sendMessage", _form(chat_id=1, text="x", reply_markup={"inline_keyboard": [[button]]}), set()
        )

    assert errors_for({"text": "ok", "callback_data": "d" * 64}) == []
    assert any("BUTTON_DATA_INVALID" in e for e in errors_for({"text": "ok", "callback_data": "d" * 65}))
    assert any("BUTTON_DATA_INVALID" in e for e in errors_for({"text": "ok", "callback_data": "ж" * 33}))  # 66 bytes
    assert any("BUTTON_DATA_INVALID" in e for e in errors_for({"text": "ok", "callback_data": ""}))
    assert any("Text buttons are unallowed" in e for e in errors_for({"text": "ok"}))
    assert any("exactly one" in e for e in errors_for({"text": "ok", "url": "https://x.y", "callback_data": "a"}))
    assert any("non-empty" in e for e in errors_for({"text": "", "callback_data": "a"}))
    assert any("callback_data" in e for e in errors_for({"text": "ok", "callback_data": 5}))


def test_validator_checks_commands_and_scopes() -> None:
    ok = _form(
        commands=[{"command": "start", "description": "Start"}, {"command": "my_card2", "description": "Card"}],
        scope={"type": "chat", "chat_id": 5},
        language_code="en",
    )
    assert validate_request("setMyCommands", ok, set()) == []

    def errors_for(**params: Any) -> str:
        return " | ".join(validate_request("setMyCommands", _form(**params), set()))

    assert "BOT_COMMAND_INVALID" in errors_for(commands=[{"command": "Start", "description": "x"}])
    assert "BOT_COMMAND_INVALID" in errors_for(commands=[{"command": "/start", "description": "x"}])
    assert "BOT_COMMAND_INVALID" in errors_for(commands=[{"command": "c" * 33, "description": "x"}])
    assert "BOT_COMMAND_DESCRIPTION_INVALID" in errors_for(commands=[{"command": "a", "description": "d" * 257}])
    scopeless = [{"command": "a", "description": "b"}]
    assert "scope.chat_id" in errors_for(commands=scopeless, scope={"type": "chat"})
    assert 'type "weird" is not one of' in errors_for(commands=scopeless, scope={"type": "weird"})
    assert "is not a field of BotCommandScopeDefault" in errors_for(
        commands=scopeless, scope={"type": "default", "chat_id": 1}
    )


def test_validator_checks_start_payload_in_links() -> None:
    def errors_for(text: str) -> list[str]:
        return validate_request("sendMessage", {"chat_id": "1", "text": text}, set())

    assert errors_for("Invite: https://t.me/loyalty_test_bot?start=ref_AbC-9") == []
    assert any("/start payload" in e for e in errors_for("https://t.me/loyalty_test_bot?start=ref%20x"))
    assert any("/start payload" in e for e in errors_for("https://t.me/b?start=" + "a" * 65))


def test_validator_checks_nested_media_captions() -> None:
    media = [{"type": "photo", "media": "attach://p1", "caption": "<b>x", "parse_mode": "HTML"}]
    errors = validate_request("sendMediaGroup", _form(chat_id=1, media=media), {"p1"})
    assert any("can't parse entities" in e for e in errors)
    media[0]["caption"] = "<b>x</b>"
    assert validate_request("sendMediaGroup", _form(chat_id=1, media=media), {"p1"}) == []
    assert any("not attached" in e for e in validate_request("sendMediaGroup", _form(chat_id=1, media=media), set()))


# ------------------------------------------------------------------------------------------ server


@pytest.mark.asyncio
async def test_get_me(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456
    assert me.is_bot
    assert me.username == "loyalty_test_bot"
    assert fake.calls_of("getMe")[0].ok
    assert FakeBotAPI is FakeTelegram


@pytest.mark.asyncio
async def test_typical_aiogram_requests_validate_cleanly(fake: FakeTelegram, bot: Bot) -> None:
    fake.user(USER_ID, "Ann", username="ann")
    await bot.delete_webhook(drop_pending_updates=True)
    await bot.get_updates(offset=1, timeout=0, allowed_updates=["message", "callback_query", "my_chat_member"])
    await bot.set_my_commands([BotCommand(command="start", description="Start")], scope=BotCommandScopeDefault())
    first = await bot.send_message(
        USER_ID,
        "<b>Welcome</b>, Ann &amp; co",
        reply_markup=_markup("card", "history"),
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )
    await bot.send_message(
        USER_ID,
        "Menu",
        reply_markup=ReplyKeyboardMarkup(
            keyboard=[[KeyboardButton(text="Balance"), KeyboardButton(text="Phone", request_contact=True)]],
            resize_keyboard=True,
        ),
    )
    await bot.send_message(USER_ID, "Code?", reply_markup=ForceReply(input_field_placeholder="123"))
    await bot.answer_callback_query("cbq-1", text="Done")
    edited = await bot.edit_message_text(
        "<i>Updated</i>", chat_id=USER_ID, message_id=first.message_id, reply_markup=_markup("back")
    )
    assert isinstance(edited, Message)
    photo = await bot.send_photo(USER_ID, BufferedInputFile(b"\x89PNG-card", "card.png"), caption="<b>Your card</b>")
    assert photo.photo is not None
    await bot.send_photo(USER_ID, photo.photo[-1].file_id, caption="again")  # re-send by file_id
    await bot.send_media_group(
        USER_ID,
        [InputMediaPhoto(media=BufferedInputFile(b"a", "a.png"), caption="<i>1</i>"), InputMediaPhoto(media="x")],
    )
    await bot.send_document(USER_ID, BufferedInputFile(b"a;b\n", "export.csv"), caption="Export")
    await bot.copy_message(USER_ID, USER_ID, first.message_id)
    await bot.send_message(USER_ID, "bye", reply_markup=ReplyKeyboardRemove())
    await bot.delete_message(USER_ID, first.message_id)
    await bot.send_chat_action(USER_ID, "typing")
    await bot.get_chat(USER_ID)
    await bot.get_chat_member(USER_ID, USER_ID)
    await bot.send_invoice(
        USER_ID,
        title="Stars",
        description="Top up",
        payload="p1",
        currency="XTR",
        prices=[LabeledPrice(label="x", amount=5)],
    )
    await bot.create_forum_topic(-1001234, "Support")
    await bot.get_webhook_info()
    fake.assert_clean()
    assert all(call.ok for call in fake.calls), [c.response for c in fake.calls if not c.ok]
    assert fake.calls_of("sendmessage")[0].params["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "card", "callback_data": "card"}, {"text": "history", "callback_data": "history"}]
        ]
    }
    assert fake.sent(USER_ID)[0].params["chat_id"] == USER_ID
    assert fake.reply_keyboard(USER_ID) is None  # removed by the last message


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<b>unclosed", "can't parse entities"),
        ("Tom & Jerry", "can't parse entities"),
        ("<script>alert(1)</script>", 'Unsupported start tag "script"'),
        ("x" * 4097, "message is too long"),
    ],
)
async def test_invalid_text_is_refused(fake: FakeTelegram, bot: Bot, text: str, expected: str) -> None:
    with pytest.raises(TelegramBadRequest, match="Bad Request: "):
        await bot.send_message(USER_ID, text)
    assert len(fake.spec_errors) == 1
    assert fake.spec_errors[0].startswith("sendMessage: ")
    assert expected in fake.spec_errors[0]
    with pytest.raises(AssertionError, match="1 Bot API spec error"):
        fake.assert_clean()
    assert fake.calls[-1].errors and fake.calls[-1].response["error_code"] == 400


@pytest.mark.asyncio
async def test_long_callback_data_is_refused(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(USER_ID, "pick", reply_markup=_markup("x" * 65))
    assert any("BUTTON_DATA_INVALID" in e for e in fake.spec_errors)


@pytest.mark.asyncio
async def test_raw_requests(fake: FakeTelegram) -> None:
    base = f"{fake.base_url}/bot{fake.token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/sendMessage", data={"chat_id": "1", "text": "hi", "bogus": "1"}) as resp:
            body = await resp.json()
        assert resp.status == 400
        assert body["ok"] is False and body["error_code"] == 400
        assert body["description"].startswith("Bad Request: ") and "bogus" in body["description"]
        assert fake.spec_errors == ['sendMessage: unknown parameter "bogus" for method sendMessage']
        fake.clear()

        async with http.post(f"{base}/sendMessage", json={"chat_id": 1, "text": "json body"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["result"]["text"] == "json body"
        async with http.get(f"{base}/getMe") as resp:
            assert (await resp.json())["result"]["is_bot"] is True
        async with http.post(f"{fake.base_url}/bot1:WRONG/getMe") as resp:
            assert resp.status == 401
            assert await resp.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        async with http.get(f"{fake.base_url}/file/bot{fake.token}/files/missing") as resp:
            assert resp.status == 404
        async with http.post(f"{base}/launchRocket") as resp:
            assert resp.status == 404
    assert fake.spec_errors == ['launchRocket: method "launchRocket" not found']
    assert fake.last_text(1) == "json body"


@pytest.mark.asyncio
async def test_set_my_commands_with_chat_scope(fake: FakeTelegram, bot: Bot) -> None:
    commands = [BotCommand(command="start", description="Start"), BotCommand(command="card", description="Card")]
    await bot.set_my_commands(commands, scope=BotCommandScopeChat(chat_id=USER_ID), language_code="ru")
    fake.assert_clean()
    scope = {"type": "chat", "chat_id": USER_ID}
    assert fake.commands_for(scope, "ru") == [c.model_dump(exclude_none=True) for c in commands]
    assert fake.commands_for(scope) is None
    got = await bot.get_my_commands(scope=BotCommandScopeChat(chat_id=USER_ID), language_code="ru")
    assert [c.command for c in got] == ["start", "card"]
    await bot.delete_my_commands(scope=BotCommandScopeChat(chat_id=USER_ID), language_code="ru")
    assert fake.commands == {}
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="My-Card", description="x")])


@pytest.mark.asyncio
async def test_send_photo_upload(fake: FakeTelegram, bot: Bot) -> None:
    msg = await bot.send_photo(USER_ID, BufferedInputFile(b"\x89PNG qr", "qr.png"), caption="<b>QR</b>")
    fake.assert_clean()
    call = fake.calls_of("sendPhoto")[0]
    assert list(call.files.values()) == [b"\x89PNG qr"]
    assert call.params["photo"].startswith("attach://")
    assert msg.caption == "QR" and msg.caption_entities is not None and msg.photo is not None
    file = await bot.get_file(msg.photo[-1].file_id)
    assert file.file_path is not None
    buffer = io.BytesIO()
    await bot.download_file(file.file_path, buffer)
    assert buffer.getvalue() == b"\x89PNG qr"
    # What the demo saves: the upload's file name, and the content by file_id (also when sent again by it).
    assert list(call.file_names.values()) == ["qr.png"] and fake.file(msg.photo[-1].file_id) == b"\x89PNG qr"


async def test_uploaded_albums_and_documents_keep_names_and_content(fake: FakeTelegram, bot: Bot) -> None:
    album = await bot.send_media_group(
        USER_ID, [InputMediaPhoto(media=BufferedInputFile(f"png {i}".encode(), f"chart-{i}.png")) for i in (1, 2)]
    )
    document = await bot.send_document(USER_ID, BufferedInputFile(b"a,b\n1,2\n", "members.csv"))
    fake.assert_clean()
    assert [fake.file(m.photo[-1].file_id) for m in album if m.photo] == [b"png 1", b"png 2"]
    assert sorted(fake.calls_of("sendMediaGroup")[0].file_names.values()) == ["chart-1.png", "chart-2.png"]
    assert document.document is not None and document.document.file_name == "members.csv"
    assert fake.file(document.document.file_id) == b"a,b\n1,2\n"


async def test_a_users_photo_can_be_fetched_and_sent_on(fake: FakeTelegram, bot: Bot) -> None:
    ann = fake.user(USER_ID, "Ann")
    update = fake.message_update(ann, photo=fake.photo(b"\x89PNG latte"), caption="My latte")
    assert load_spec().check_object(update, "Update") == []
    largest = update["message"]["photo"][-1]["file_id"]
    buffer = io.BytesIO()
    await bot.download(largest, buffer)
    assert buffer.getvalue() == b"\x89PNG latte"
    sent = await bot.send_photo(USER_ID + 1, largest)
    assert sent.photo is not None and fake.file(sent.photo[-1].file_id) == b"\x89PNG latte"


@pytest.mark.asyncio
async def test_messages_store_edits_and_deletes(fake: FakeTelegram, bot: Bot) -> None:
    msg = await bot.send_message(USER_ID, "<b>Balance</b>: 10", reply_markup=_markup("refresh"))
    stored = fake.last_message(USER_ID)
    assert stored is not None and stored["text"] == "Balance: 10"
    assert stored["entities"] == [{"type": "bold", "offset": 0, "length": 7}]
    assert stored["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "refresh"
    await bot.edit_message_text("Balance: 12", chat_id=USER_ID, message_id=msg.message_id)
    edited = fake.find_message(USER_ID, msg.message_id)
    assert edited is not None and edited["text"] == "Balance: 12" and "reply_markup" not in edited
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Balance: 12", chat_id=USER_ID, message_id=msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=USER_ID, message_id=999)
    await bot.delete_message(USER_ID, msg.message_id)
    assert fake.last_message(USER_ID) is None and fake.last_text(USER_ID) is None
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(USER_ID, msg.message_id)
    fake.assert_clean()  # runtime errors like "not modified" are not spec violations


@pytest.mark.asyncio
async def test_get_updates_long_poll(fake: FakeTelegram, bot: Bot) -> None:
    ann = fake.user(USER_ID, "Ann")

    async def push_later() -> None:
        await asyncio.sleep(0.1)
        fake.push_update(fake.message_update(ann, "/start ref_1"))

    task = asyncio.create_task(push_later())
    loop = asyncio.get_running_loop()
    started = loop.time()
    updates = await bot.get_updates(timeout=2)
    await task
    assert loop.time() - started < 1.5  # woken by the push, not by the timeout
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.text == "/start ref_1"
    assert message.entities is not None and message.entities[0].type == "bot_command"
    assert message.entities[0].length == len("/start")
    assert len(await bot.get_updates(timeout=0)) == 1  # not confirmed yet
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=0) == []
    assert fake.pending_updates() == []
    fake.assert_clean()


@pytest.mark.asyncio
async def test_get_updates_honours_allowed_updates_and_limit(fake: FakeTelegram, bot: Bot) -> None:
    ann = fake.user(USER_ID)
    for i in range(3):
        fake.push_update(fake.message_update(ann, f"m{i}"))
    fake.push_update(fake.my_chat_member_update(ann, "kicked"))
    assert [u.message.text for u in await bot.get_updates(limit=2) if u.message] == ["m0", "m1"]
    updates = await bot.get_updates(allowed_updates=["message"])
    assert [u.message.text for u in updates if u.message] == ["m0", "m1", "m2"]  # my_chat_member dropped
    assert [u.update_id for u in updates] == sorted(u.update_id for u in updates)


@pytest.mark.asyncio
async def test_update_builders_match_spec(fake: FakeTelegram, bot: Bot) -> None:
    spec = load_spec()
    ann = fake.user(USER_ID, "Ann", username="ann", last_name="Lee")
    await bot.send_message(USER_ID, "Pick", reply_markup=_markup("a"))
    bot_message = fake.last_message(USER_ID)
    assert bot_message is not None
    updates = [
        fake.message_update(ann, "/start"),
        fake.message_update(ann, "hello", chat={"id": -100123, "type": "supergroup", "title": "G"}),
        fake.message_update(ann, contact={"phone_number": "+100", "first_name": "Ann", "user_id": USER_ID}),
        fake.callback_update(ann, bot_message, "a"),
        fake.my_chat_member_update(ann, "kicked"),
        fake.my_chat_member_update(ann, "member"),
        fake.pre_checkout_update(ann, 50, "stars:50"),
        fake.successful_payment_update(ann, 50, "stars:50"),
    ]
    for update in updates:
        assert spec.check_object(update, "Update") == [], update
    ids = [u["update_id"] for u in updates]
    assert len(set(ids)) == len(ids)
    message_ids = [u["message"]["message_id"] for u in updates if "message" in u and u["message"]["chat"]["id"] > 0]
    assert len(set(message_ids)) == len(message_ids) and bot_message["message_id"] not in message_ids
    with pytest.raises(ValueError, match="unknown chat member status"):
        fake.my_chat_member_update(ann, "sleeping")


@pytest.mark.asyncio
async def test_fail_next_and_fail_for_chat(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(USER_ID, "x")
    assert info.value.retry_after == 3
    assert fake.calls_of("sendMessage")[-1].response["parameters"] == {"retry_after": 3}
    await bot.send_message(USER_ID, "x")  # only the next call failed

    fake.fail_for_chat(USER_ID + 1)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(USER_ID + 1, "x")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(USER_ID + 1, "x")
    await bot.send_message(USER_ID, "still fine")
    fake.clear_faults()
    await bot.send_message(USER_ID + 1, "unblocked")
    assert [c.ok for c in fake.sent(USER_ID + 1)] == [False, False, True]
    assert len(fake.sent(USER_ID + 1, ok_only=True)) == 1
    fake.assert_clean()


@pytest.mark.asyncio
async def test_rate_limit(fake: FakeTelegram, bot: Bot) -> None:
    fake.rate_limit(3)
    results = []
    for _ in range(5):
        try:
            await bot.send_message(USER_ID, "x")
            results.append("ok")
        except TelegramRetryAfter as exc:
            results.append(f"retry {exc.retry_after}")
    assert results == ["ok", "ok", "ok", "retry 1", "retry 1"]
    fake.rate_limit(None)
    await bot.send_message(USER_ID, "x")


@pytest.mark.asyncio
async def test_lenient_mode_records_but_serves(bot: Bot) -> None:
    async with FakeTelegram(strict=False) as lenient:
        lenient_bot = _make_bot(lenient)
        msg = await lenient_bot.send_message(USER_ID, "a & b")
        await _close(lenient_bot)
    assert msg.text == "a & b"
    assert len(lenient.spec_errors) == 1


@pytest.mark.asyncio
async def test_dispatcher_long_polling_round_trip(fake: FakeTelegram) -> None:
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(f"<b>echo</b>: {message.text}")

    seen: list[str] = []
    fake.listeners.append(lambda call: seen.append(call.method))
    bot = _make_bot(fake)
    polling = asyncio.create_task(
        dp.start_polling(bot, handle_signals=False, polling_timeout=5, close_bot_session=False)
    )
    fake.push_update(fake.message_update(fake.user(USER_ID), "hi"))
    for _ in range(100):
        if fake.last_text(USER_ID):
            break
        await asyncio.sleep(0.02)
    await dp.stop_polling()
    await polling
    await _close(bot)
    assert fake.last_text(USER_ID) == "echo: hi"
    assert "sendMessage" in seen and "getUpdates" in seen
    assert fake.calls_of("getUpdates")[0].params["allowed_updates"] == ["message"]
    fake.assert_clean()


@pytest.mark.asyncio
async def test_stars_invoices_follow_telegrams_rules(fake: FakeTelegram, bot: Bot) -> None:
    prices = [LabeledPrice(label="a", amount=5), LabeledPrice(label="b", amount=5)]
    with pytest.raises(TelegramBadRequest, match="exactly one price"):
        await bot.send_invoice(USER_ID, title="Stars", description="d", payload="p", currency="XTR", prices=prices)
    with pytest.raises(TelegramBadRequest, match="invoice title"):
        await bot.send_invoice(USER_ID, title="x" * 33, description="d", payload="p", currency="XTR", prices=prices[:1])
    with pytest.raises(TelegramBadRequest, match="Pay button"):
        await bot.send_invoice(
            USER_ID,
            title="Stars",
            description="d",
            payload="p",
            currency="XTR",
            prices=prices[:1],
            reply_markup=_markup("later"),
        )
    with pytest.raises(TelegramBadRequest, match="error_message is required"):
        await bot.answer_pre_checkout_query("q1", ok=False)
    assert len(fake.spec_errors) == 4


@pytest.mark.asyncio
async def test_a_stars_charge_is_refunded_once_and_only_to_its_payer(fake: FakeTelegram, bot: Bot) -> None:
    user = fake.user(USER_ID)
    fake.successful_payment_update(user, 5, "p", charge_id="ch-1")
    with pytest.raises(TelegramBadRequest, match="CHARGE_NOT_FOUND"):
        await bot.refund_star_payment(USER_ID + 1, "ch-1")
    with pytest.raises(TelegramBadRequest, match="CHARGE_NOT_FOUND"):
        await bot.refund_star_payment(USER_ID, "ch-unknown")
    assert await bot.refund_star_payment(USER_ID, "ch-1") is True
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(USER_ID, "ch-1")
    refunded = fake.refunded_payment_update(user, "ch-1")["message"]["refunded_payment"]
    assert refunded["telegram_payment_charge_id"] == "ch-1" and refunded["total_amount"] == 5
    fake.assert_clean()


@pytest.mark.asyncio
async def test_stars_subscription_links_follow_telegrams_rules(fake: FakeTelegram, bot: Bot) -> None:
    one = [LabeledPrice(label="VIP", amount=250)]
    with pytest.raises(TelegramBadRequest, match="subscription_period must be 2592000"):
        await bot.create_invoice_link("VIP", "d", "p", "XTR", one, subscription_period=7 * 86400)
    with pytest.raises(TelegramBadRequest, match='needs the currency "XTR"'):
        await bot.create_invoice_link("VIP", "d", "p", "USD", one, provider_token="t", subscription_period=2592000)
    with pytest.raises(TelegramBadRequest, match="at most 10000 Stars"):
        await bot.create_invoice_link(
            "VIP", "d", "p", "XTR", [LabeledPrice(label="VIP", amount=10001)], subscription_period=2592000
        )
    assert len(fake.spec_errors) == 3
    fake.spec_errors.clear()
    link = await bot.create_invoice_link("VIP", "d", "p", "XTR", one, subscription_period=2592000)
    assert fake.invoice_links[link] == {
        "payload": "p",
        "currency": "XTR",
        "total_amount": 250,
        "subscription_period": 2592000,
    }
    fake.assert_clean()


@pytest.mark.asyncio
async def test_a_subscription_renews_until_the_bot_cancels_it(fake: FakeTelegram, bot: Bot) -> None:
    user = fake.user(USER_ID)
    link = await bot.create_invoice_link(
        "VIP", "d", "p", "XTR", [LabeledPrice(label="VIP", amount=250)], subscription_period=2592000
    )
    first = fake.subscription_payment_update(user, link, now=1_000_000, charge_id="sub-1")["message"]
    paid = first["successful_payment"]
    assert paid["is_recurring"] and paid["is_first_recurring"] and paid["subscription_expiration_date"] == 3_592_000
    renewal = fake.renewal_payment_update(user, "sub-1")["message"]["successful_payment"]
    assert renewal["is_recurring"] and "is_first_recurring" not in renewal
    assert renewal["subscription_expiration_date"] == 3_592_000 + 2592000
    assert renewal["telegram_payment_charge_id"] != "sub-1" and renewal["total_amount"] == 250
    with pytest.raises(TelegramBadRequest, match="CHARGE_ID_INVALID"):
        await bot.edit_user_star_subscription(USER_ID + 1, "sub-1", is_canceled=True)
    with pytest.raises(TelegramBadRequest, match="CHARGE_ID_INVALID"):
        await bot.edit_user_star_subscription(USER_ID, renewal["telegram_payment_charge_id"], is_canceled=True)
    assert await bot.edit_user_star_subscription(USER_ID, "sub-1", is_canceled=True) is True
    with pytest.raises(ValueError, match="cancelled"):
        fake.renewal_payment_update(user, "sub-1")
    assert await bot.edit_user_star_subscription(USER_ID, "sub-1", is_canceled=False) is True
    assert fake.renewal_payment_update(user, "sub-1")["message"]["successful_payment"]["is_recurring"]
    assert await bot.refund_star_payment(USER_ID, renewal["telegram_payment_charge_id"]) is True  # refundable
    fake.assert_clean()
