"""The outer middleware on every update: a database session, the sender as a member, their role and language."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n

from handlers.ui import user_locale
from loyalty.members import identify
from loyalty.roles import Role, StaticRoles
from storage.database import SessionFactory

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class UpdateContext(BaseMiddleware):
    """Puts ``session``, ``member`` (None before /start) and ``role`` into handler data and sets the locale
    for gettext: the member's chosen language, else the one Telegram reports for the user.

    One layer rather than a middleware each: aiogram wraps every layer around every update, and on the
    busiest commands the layers cost as much as the database reads."""

    def __init__(self, sessions: SessionFactory, roles: StaticRoles, i18n: I18n) -> None:
        self.sessions = sessions
        self.roles = roles
        self.i18n = i18n

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        async with self.sessions() as session:
            data["session"] = session
            if user is None:
                member, role = None, Role.MEMBER
            else:
                member, role = await identify(session, self.roles, user.id)
            data["member"], data["role"] = member, role
            with self.i18n.context(), self.i18n.use_locale(user_locale(member, user)):
                return await handler(event, data)
