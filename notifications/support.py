"""The support desk's scheduled report: threads waiting longer than the response target, told once per wait."""

from __future__ import annotations

import html
from datetime import datetime, timedelta

from aiogram import Bot
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from loyalty import feedback
from loyalty.program import Program
from notifications.texts import speaking
from storage.database import SessionFactory

INBOX_LINES = 30  # threads listed in one message, well inside Telegram's 4096 characters


def waited(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return _("{minutes} min").format(minutes=minutes)
    return _("{hours} h {minutes} min").format(hours=minutes // 60, minutes=minutes % 60)


async def report_overdue(
    bot: Bot, sessions: SessionFactory, chat_id: int | None, program: Program, i18n: I18n, now: datetime
) -> int:
    """Tell the support chat, once per wait, about threads waiting longer than the response target.

    The scheduler runs it every few minutes; returns how many threads were reported."""
    target = timedelta(minutes=program.support.response_target_minutes)
    async with sessions() as session:
        overdue = await feedback.take_overdue(session, now, target)
    if not overdue or chat_id is None:
        return len(overdue)
    with speaking(i18n, program.staff_language):
        lines = [
            _("⏰ Waiting longer than {minutes} min for an answer:").format(
                minutes=program.support.response_target_minutes
            )
        ]
        lines += [
            f"#{thread.id} {html.escape(member.first_name or '—')} (<code>{member.code}</code>) · "
            + waited(now - thread.waiting_since)
            for thread, member in overdue[:INBOX_LINES]
            if thread.waiting_since
        ]
        if len(overdue) > INBOX_LINES:
            lines.append(_("…and {count} more.").format(count=len(overdue) - INBOX_LINES))
    await bot.send_message(chat_id, "\n".join(lines))
    return len(overdue)
