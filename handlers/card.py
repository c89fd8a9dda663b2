"""/card: the member code and a QR code of it, for the cashier to scan or type."""

from __future__ import annotations

import html
import io
import logging
from functools import lru_cache

import segno
from aiogram import Bot, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, MenuButton, slash
from handlers.menu import CARD
from handlers.ui import app_markup
from loyalty.members import MemberView
from loyalty.program import Program
from loyalty.punchcards import progress_of
from notifications.texts import card_lines
from storage.database import DbSession

log = logging.getLogger(__name__)
KEEP_PHOTOS = 4096


@lru_cache(maxsize=KEEP_PHOTOS)  # members show their card again and again; drawing the PNG costs milliseconds
def qr_png(payload: str) -> bytes:
    buffer = io.BytesIO()
    segno.make_qr(payload, error="m").save(buffer, kind="png", scale=10, border=4)
    return buffer.getvalue()


class SentPhotos:
    """The file_id Telegram gave each card's photo (by bot and member code): a card shown again is sent by its id,
    a short JSON request, instead of uploading the PNG again, a multipart body that cost more than the rest of the
    update. One process's memory: another worker uploads once for itself."""

    def __init__(self, size: int = KEEP_PHOTOS) -> None:
        self.size = size
        self._ids: dict[tuple[int, str], str] = {}

    def get(self, bot: Bot, code: str) -> str | None:
        return self._ids.get((bot.id, code))

    def keep(self, bot: Bot, code: str, file_id: str) -> None:
        self._ids[(bot.id, code)] = file_id
        if len(self._ids) > self.size:
            del self._ids[next(iter(self._ids))]  # the oldest

    def forget(self, bot: Bot, code: str) -> None:
        self._ids.pop((bot.id, code), None)


async def show_card(
    message: Message,
    session: DbSession,
    member: MemberView,
    program: Program,
    bot: Bot,
    card_photos: SentPhotos,
    webapp_url: str | None = None,
) -> None:
    # The QR holds just the code, so a till's scanner types exactly what a cashier would.
    caption = "\n".join(
        [
            _("💳 <b>{program}</b> member card").format(program=html.escape(program.name)),
            _("Name: {name}").format(name=html.escape(member.first_name)),
            _("Member code: <code>{code}</code>").format(code=member.code),
            _("Points: {points}").format(points=member.points),
            *card_lines(await progress_of(session, program, member.id)),
            "",
            _("Show this code at the till to earn points."),
        ]
    )
    file_id = card_photos.get(bot, member.code)
    if file_id is not None:
        try:
            await message.answer_photo(file_id, caption=caption, reply_markup=app_markup(webapp_url, "card"))
            return
        except TelegramBadRequest as exc:  # Telegram no longer knows it: upload the picture again
            log.info("card photo %s was refused (%s); uploading it again", file_id, exc.message)
            card_photos.forget(bot, member.code)
    photo = BufferedInputFile(qr_png(member.code), filename=f"card-{member.code}.png")
    sent = await message.answer_photo(photo, caption=caption, reply_markup=app_markup(webapp_url, "card"))
    if sent.photo:
        card_photos.keep(bot, member.code, sent.photo[-1].file_id)


def router() -> Router:
    router = Router(name="card")
    router.message.filter(IsMember())
    router.message.register(show_card, slash("card"))
    router.message.register(show_card, MenuButton(CARD))
    return router
