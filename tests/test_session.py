"""The bot's Bot API session: JSON bodies for requests without files, multipart for uploads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import SendMessage
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from bot.services import make_bot
from bot.settings import Settings
from emulator import FakeTelegram

CHAT = 4242
KEYBOARD = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="页 2 ›", callback_data="hist:2")]])


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    settings = Settings(bot_token=tg.token, telegram_api_url=tg.base_url, _env_file=None)  # type: ignore[call-arg]
    bot = make_bot(settings)
    yield bot
    await bot.session.close()


async def test_a_message_goes_as_json_with_its_markup_and_the_bots_defaults(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(CHAT, "Ann")
    sent = await bot.send_message(CHAT, "⭐ <b>50</b> 积分 &amp; more", reply_markup=KEYBOARD)

    call = tg.calls_of("sendMessage")[-1]
    assert call.content_type == "application/json"
    assert call.params["reply_markup"] == KEYBOARD.model_dump(exclude_none=True)
    assert call.params["parse_mode"] == "HTML"  # the Bot's default, resolved before encoding
    assert call.params["link_preview_options"] == {"is_disabled": True}
    assert sent.text == "⭐ 50 积分 & more"
    assert [e.type for e in sent.entities or []] == ["bold"]
    tg.assert_clean()


async def test_an_upload_goes_as_multipart(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(CHAT, "Ann")
    png = bytes.fromhex("89504e470d0a1a0a") + b"\0" * 64
    await bot.send_photo(CHAT, BufferedInputFile(png, "card.png"), caption="<i>card</i>")

    call = tg.calls_of("sendPhoto")[-1]
    assert call.content_type == "multipart/form-data"
    assert list(call.files.values()) == [png]
    tg.assert_clean()


async def test_a_refused_json_request_raises_as_aiogram_does(tg: FakeTelegram, bot: Bot) -> None:
    tg.user(CHAT, "Ann")
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(CHAT, "<b>unclosed")
    tg.spec_errors.clear()


def test_the_body_keeps_unicode_and_drops_unset_fields(bot: Bot) -> None:
    body = bot.session.build_json(bot, SendMessage(chat_id=CHAT, text="繁體中文"))  # type: ignore[attr-defined]
    assert body is not None
    params = json.loads(body)
    assert "繁體中文".encode() in body
    assert params["chat_id"] == CHAT and params["text"] == "繁體中文"
    assert None not in params.values()
