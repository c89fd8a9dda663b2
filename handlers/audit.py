"""/audit: admins read what staff did to members' points, and what they were refused (their own account)."""

from __future__ import annotations

import html

from aiogram import Router
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission, slash
from loyalty.audit import OWN_PREFIX, latest
from loyalty.program import Program
from loyalty.roles import Permission
from notifications.texts import when
from storage.database import DbSession

SHOWN = 20


async def show_audit(message: Message, session: DbSession, program: Program, i18n: I18n) -> None:
    lines = await latest(session, SHOWN)
    if not lines:
        await message.answer(_("The audit log is empty."))
        return
    out = [_("🧾 <b>Audit log</b>, newest first")]
    for line in lines:
        entry = line.entry
        action = entry.action
        if action.startswith(OWN_PREFIX):
            action = _("refused, own account: {action}").format(action=action[len(OWN_PREFIX) :])
        points = f" {entry.points:+d}" if entry.points else ""
        out.append(
            "{time} · {actor} · {action} · {member}{points} {detail}".format(
                time=when(entry.created_at, program.tz, i18n.current_locale),
                actor=entry.actor_id,
                action=html.escape(action),
                member=f"<code>{line.member_code}</code>" if line.member_code else "—",
                points=points,
                detail=html.escape(entry.detail),
            ).rstrip()
        )
    await message.answer("\n".join(out))


def router() -> Router:
    router = Router(name="audit")
    router.message.register(show_audit, slash("audit"), HasPermission(Permission.ADJUST_POINTS))
    return router
