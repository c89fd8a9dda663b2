"""The end-to-end harness: the real dispatcher and aiogram Bot over HTTP against the fake Bot API."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from bot.services import Services
from emulator import Call, FakeTelegram
from loyalty.members import get_by_telegram_id
from storage.models import Member

ADMIN_ID = 9001
CASHIER_ID = 9002
SUPPORT_ID = 9003
SUPPORT_CHAT_ID = -1009000000001  # the staff supergroup


class Clock:
    """A clock tests can move; handlers and the program read time only through it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class BotHarness:
    def __init__(self, tg: FakeTelegram, services: Services, clock: Clock) -> None:
        self.tg, self.services, self.clock = tg, services, clock
        self.bot, self.dp, self.sessions = services.bot, services.dispatcher, services.sessions

    def user(
        self, user_id: int, first_name: str = "Ann", language_code: str | None = "en", username: str | None = None
    ) -> dict[str, Any]:
        return self.tg.user(user_id, first_name=first_name, username=username, language_code=language_code)

    async def feed(self, update: dict[str, Any]) -> list[Call]:
        """Deliver one update to the dispatcher and return the Bot API calls it caused."""
        before = len(self.tg.calls)
        await self.dp.feed_raw_update(self.bot, update)
        return self.tg.calls[before:]

    async def send(self, user: dict[str, Any], text: str) -> list[Call]:
        return await self.feed(self.tg.message_update(user, text))

    async def press(
        self, user: dict[str, Any], button_text: str, *, chat_id: int | None = None, message_id: int | None = None
    ) -> list[Call]:
        """Tap the inline button with this text on the last message the bot sent to the user (or to ``chat_id``,
        or on message ``message_id`` there)."""
        chat = chat_id if chat_id is not None else user["id"]
        message = self.tg.find_message(chat, message_id) if message_id else self.tg.last_message(chat)
        assert message is not None, "the bot sent nothing to press"
        for row in message.get("reply_markup", {}).get("inline_keyboard", []):
            for button in row:
                if button["text"] == button_text:
                    return await self.feed(self.tg.callback_update(user, message, button["callback_data"]))
        raise AssertionError(f"no button {button_text!r} in {message.get('reply_markup')}")

    @staticmethod
    def texts(calls: list[Call], chat_id: int | None = None) -> list[str]:
        out = []
        for call in calls:
            if chat_id is not None and call.params.get("chat_id") != chat_id:
                continue
            text = call.params.get("text") or call.params.get("caption")
            if isinstance(text, str):
                out.append(text)
        return out

    async def arrived(self, since: int, chat_id: int) -> list[str]:
        """The texts sent to ``chat_id`` since call number ``since``, once there is one (or after 5 s): notices a
        web request sends after answering (the Mini App's till) arrive a moment later."""
        for _ in range(250):
            if found := self.texts(self.tg.calls[since:], chat_id):
                return found
            await asyncio.sleep(0.02)
        return []

    async def member(self, telegram_id: int) -> Member | None:
        async with self.sessions() as session:
            return await get_by_telegram_id(session, telegram_id)

    async def purchase(self, member_ref: str, amount: str, receipt: str) -> list[Call]:
        return await self.send(self.user(CASHIER_ID, "Cashier"), f"/purchase {member_ref} {amount} coffee {receipt}")
