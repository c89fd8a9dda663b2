"""/adjust: an admin adds or removes a member's points, with a reason, into the audit log."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, Router
from aiogram.filters import CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission, slash
from loyalty.account import MAX_ADJUSTMENT, adjust
from loyalty.audit import OwnAccount
from loyalty.ledger import InsufficientPoints
from loyalty.members import find_member
from loyalty.program import Program
from loyalty.roles import Permission
from notifications.purchases import notify_adjustment
from notifications.refusals import own_account_refused
from storage.database import DbSession

_DELTA = re.compile(r"^[+-][0-9]{1,7}$")


SILENT = "--silent"  # the member is not told (a correction of a mistake they never saw, say)


def _usage() -> str:
    return _("Usage: {usage}").format(usage=html.escape(_("/adjust <member> <+/-points> <reason> [--silent]")))


async def adjust_points(
    message: Message,
    command: CommandObject,
    bot: Bot,
    i18n: I18n,
    session: DbSession,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    parts = (command.args or "").split(maxsplit=2)
    if len(parts) < 3:
        await message.answer(_usage())
        return
    ref, delta_text, reason = parts
    silent = reason.split()[-1] == SILENT
    if silent:
        reason = reason[: reason.rindex(SILENT)].strip()
    if not reason:
        await message.answer(_usage())
        return
    if not _DELTA.match(delta_text) or int(delta_text) == 0 or abs(int(delta_text)) > MAX_ADJUSTMENT:
        await message.answer(_("Points must be a signed whole number like +50 or -20, not zero."))
        return
    member = await find_member(session, ref)
    if member is None or member.id is None:
        await message.answer(_("No member found for {ref}.").format(ref=html.escape(ref)))
        return
    actor = message.from_user.id if message.from_user else 0
    name, code = html.escape(member.first_name), member.code  # read now: a refused adjustment rolls back
    try:
        result = await adjust(
            session,
            program,
            member_id=member.id,
            delta=int(delta_text),
            reason=reason[:256],
            actor_id=actor,
            key=f"adjust:{message.chat.id}:{message.message_id}",
            now=clock(),
        )
    except OwnAccount:
        await message.answer(own_account_refused())
        return
    except InsufficientPoints as short:
        await message.answer(
            ngettext(
                "{name} has only {points} point; nothing was changed.",
                "{name} has only {points} points; nothing was changed.",
                short.balance,
            ).format(name=name, points=short.balance)
        )
        return
    if not result.created:
        await message.answer(_("This adjustment was already made. Balance: {balance}.").format(balance=result.balance))
        return
    await message.answer(
        ngettext(
            "✅ {delta:+d} point for {name} (<code>{code}</code>). Balance: {balance}.",
            "✅ {delta:+d} points for {name} (<code>{code}</code>). Balance: {balance}.",
            abs(int(delta_text)),
        ).format(delta=int(delta_text), name=name, code=code, balance=result.balance)
        + ("\n" + _("The member was not told (--silent).") if silent else "")
    )
    if not silent:
        await notify_adjustment(bot, i18n, member, int(delta_text), reason[:256], result.balance)


def router() -> Router:
    router = Router(name="adjust")
    router.message.register(adjust_points, slash("adjust"), HasPermission(Permission.ADJUST_POINTS))
    return router
