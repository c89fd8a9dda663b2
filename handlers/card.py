"""/card: the member code and a QR code of it, for the cashier to scan or type."""

from __future__ import annotations

import html
import io
from functools import lru_cache

import segno
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, Message
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, MenuButton
from handlers.menu import CARD
from loyalty.members import MemberView
from loyalty.program import Program
from loyalty.punchcards import progress_of
from notifications.texts import card_lines
from storage.database import DbSession


@lru_cache(maxsize=4096)  # members show their card again and again; drawing the PNG is the handler's main cost
def qr_png(payload: str) -> bytes:
    buffer = io.BytesIO()
    segno.make_qr(payload, error="m").save(buffer, kind="png", scale=10, border=4)
    return buffer.getvalue()


async def show_card(message: Message, session: DbSession, member: MemberView, program: Program) -> None:
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
    photo = BufferedInputFile(qr_png(member.code), filename=f"card-{member.code}.png")
    await message.answer_photo(photo, caption=caption)


def router() -> Router:
    router = Router(name="card")
    router.message.filter(IsMember())
    router.message.register(show_card, Command("card"))
    router.message.register(show_card, MenuButton(CARD))
    return router
