"""Outer middlewares on every update: a database session, the member, and the sender's role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18nMiddleware

from handlers.ui import user_locale
from loyalty.members import identify
from loyalty.roles import Role, StaticRoles
from storage.database import SessionFactory

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class DbSessionMiddleware(BaseMiddleware):
    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        async with self.sessions() as session:
            data["session"] = session
            return await handler(event, data)


class MemberMiddleware(BaseMiddleware):
    """Puts ``member`` (or None before /start) and ``role`` into handler data."""

    def __init__(self, roles: StaticRoles) -> None:
        self.roles = roles

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        session = data["session"]
        if user is None:
            data["member"], data["role"] = None, Role.MEMBER
        else:
            data["member"], data["role"] = await identify(session, self.roles, user.id)
        return await handler(event, data)


class MemberI18nMiddleware(I18nMiddleware):
    """The member's chosen language, else the one Telegram reports for the user."""

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        return user_locale(data.get("member"), data.get("event_from_user"))
