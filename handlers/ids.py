"""/id: anyone learns their Telegram id, and in a group the group's: what LOYALTY_ADMIN_IDS, LOYALTY_CASHIER_IDS and
LOYALTY_SUPPORT_CHAT_ID need. It reveals nothing about members, so it answers in groups too."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import Message
from aiogram.utils.i18n import gettext as _

from handlers.filters import slash


async def show_ids(message: Message) -> None:
    lines = []
    if message.from_user is not None:
        lines.append(_("Your Telegram id: <code>{id}</code>").format(id=message.from_user.id))
    if message.chat.type != "private":
        lines.append(_("This group's id: <code>{id}</code> (for LOYALTY_SUPPORT_CHAT_ID)").format(id=message.chat.id))
    await message.answer("\n".join(lines) or _("Telegram did not say who sent this."))


def router() -> Router:
    router = Router(name="ids")
    router.message.register(show_ids, slash("id"))
    return router
