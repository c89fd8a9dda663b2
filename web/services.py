"""What the HTTP side is handed by the composition root, as protocols: ``bot.services.Services`` fits them, and
``web`` never imports ``bot``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from aiogram import Bot, Dispatcher
from aiogram.utils.i18n import I18n
from aiohttp import web

from loyalty.program import Program
from loyalty.revisions import ProgramRef
from notifications.broadcasting import Broadcaster
from storage.database import SessionFactory


class WebSettings(Protocol):
    """The settings the HTTP side reads (``bot.settings.Settings`` has them)."""

    @property
    def webhook_url(self) -> str | None: ...
    @property
    def webhook_secret(self) -> str | None: ...
    @property
    def api_tokens(self) -> dict[str, str]: ...  # token -> scope name
    @property
    def max_updates_in_flight(self) -> int: ...
    @property
    def webapp_url(self) -> str | None: ...
    @property
    def webapp_auth_max_age(self) -> int: ...
    @property
    def admin_ids(self) -> frozenset[int]: ...
    @property
    def cashier_ids(self) -> frozenset[int]: ...
    @property
    def support_ids(self) -> frozenset[int]: ...


class WebServices(Protocol):
    """What the HTTP side is handed: the composition root's ``bot.services.Services`` fits it."""

    @property
    def settings(self) -> WebSettings: ...
    @property
    def program(self) -> Program: ...
    @property
    def programs(self) -> ProgramRef: ...  # the holder of the revision in force, for the program editor
    @property
    def sessions(self) -> SessionFactory: ...
    @property
    def bot(self) -> Bot: ...
    @property
    def dispatcher(self) -> Dispatcher: ...
    @property
    def i18n(self) -> I18n: ...
    @property
    def clock(self) -> Callable[[], datetime]: ...
    @property
    def broadcaster(self) -> Broadcaster: ...
    @property
    def redis(self) -> Any | None: ...  # redis.asyncio.Redis when LOYALTY_REDIS_URL is set


SERVICES: web.AppKey[WebServices] = web.AppKey("services")
