"""The outer middleware on every update: a database session, the sender as a member, their role and language."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n

from loyalty.members import identify
from loyalty.revisions import ProgramRef
from loyalty.roles import Role, StaticRoles
from notifications.texts import user_locale
from storage.database import DbSession, SessionFactory, release_idle

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

# The update's session, with the task that handles the update: tasks the handler starts inherit the variable
# but must not touch a session that is not theirs.
_UPDATE_SESSION: ContextVar[tuple[asyncio.Task[Any] | None, DbSession] | None] = ContextVar(
    "update_session", default=None
)


class UpdateContext(BaseMiddleware):
    """Puts ``program`` (the revision in force as the update arrives: one for the whole update), ``session``,
    ``member`` (None before /start) and ``role`` into handler data and sets the locale for gettext: the member's
    chosen language, else the one Telegram reports for the user.

    One layer rather than a middleware each: aiogram wraps every layer around every update, and on the
    busiest commands the layers cost as much as the database reads."""

    def __init__(self, sessions: SessionFactory, roles: StaticRoles, i18n: I18n, programs: ProgramRef) -> None:
        self.sessions = sessions
        self.roles = roles
        self.i18n = i18n
        self.programs = programs

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        data["program"] = self.programs.current
        user: User | None = data.get("event_from_user")
        session = self.sessions()
        held = _UPDATE_SESSION.set((asyncio.current_task(), session))
        try:
            data["session"] = session
            if user is None:
                member, role = None, Role.MEMBER
            else:
                member, role = await identify(session, self.roles, user.id)
            data["member"], data["role"] = member, role
            with self.i18n.context(), self.i18n.use_locale(user_locale(member, user)):
                return await handler(event, data)
        finally:
            _UPDATE_SESSION.reset(held)
            # A session never used (reads outside a unit of work borrow a connection) has nothing to close.
            if session.in_transaction() or session.identity_map:
                await session.__aexit__(None, None, None)  # shielded: a cancelled update still closes it


class ReleaseBeforeSending(BaseRequestMiddleware):
    """Bot session middleware: before a handler waits on Telegram, its update's session gives back a connection
    it only read with (``release_idle``)."""

    async def __call__(
        self, make_request: NextRequestMiddlewareType[TelegramType], bot: Bot, method: TelegramMethod[TelegramType]
    ) -> Response[TelegramType]:
        held = _UPDATE_SESSION.get()
        if held is not None and held[0] is asyncio.current_task():
            await release_idle(held[1])
        return await make_request(bot, method)
