"""Filters shared by handler modules."""

from __future__ import annotations

from typing import Any

from aiogram.filters import Command, Filter
from aiogram.types import Message, TelegramObject
from aiogram.utils.i18n import I18n

from loyalty.roles import Permission, Role, can


def slash(*names: str) -> Command:
    """A command as people type it: a phone capitalises the first letter (/Balance), a group adds the bot's name
    (/balance@our_bot, checked against ours)."""
    return Command(*names, ignore_case=True)


class HasPermission(Filter):
    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, event: TelegramObject, role: Role = Role.MEMBER) -> bool:
        return can(role, self.permission)


class PrivateChat(Filter):
    """``F.chat.type == "private"`` as a coroutine: aiogram runs synchronous (magic) filters in a thread."""

    async def __call__(self, message: Message) -> bool:
        return message.chat.type == "private"


class SlashCommand(Filter):
    """Any text starting with "/", without a thread hop (see PrivateChat)."""

    async def __call__(self, message: Message) -> bool:
        return bool(message.text and message.text.startswith("/"))


class IsMember(Filter):
    """Passes once the sender has joined; handlers then receive a non-None ``member``."""

    async def __call__(self, event: TelegramObject, member: Any = None) -> bool:
        return member is not None


class MenuButton(Filter):
    """Matches a main-menu button in any language, since the keyboard may predate a language switch."""

    def __init__(self, msgid: str) -> None:
        self.msgid = msgid

    async def __call__(self, message: Message, i18n: I18n) -> bool:
        if not message.text:
            return False
        return any(message.text == i18n.gettext(self.msgid, locale=locale) for locale in i18n.available_locales)


class NotCommand(Filter):
    """Free input for a pending question (a birthday, a link): commands pass through to their own handlers."""

    async def __call__(self, message: Message) -> bool:
        return not (message.text or "").startswith("/")


class HasContent(Filter):
    """A message carrying ``kind`` ("photo", "contact", ...), without a thread hop (see PrivateChat)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def __call__(self, message: Message) -> bool:
        return getattr(message, self.kind, None) is not None
