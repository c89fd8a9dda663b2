"""/staff: admins invite staff with one-time links, list staff, and remove roles granted in chat.

``/start staff_<token>`` (the invitation link) is answered here, before /start joins anyone: opening it makes
the person staff, not a member.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission, slash
from loyalty import staffing, stores
from loyalty.members import MemberView
from loyalty.program import Program
from loyalty.roles import Permission, Role, StaticRoles
from loyalty.staffing import Outcome, RemoveOutcome
from notifications.menus import refresh_chat_menu
from notifications.refusals import unknown_store
from notifications.staffing import role_name, role_sources, settings_of, store_assigned
from notifications.texts import speaking, when
from storage.database import DbSession

log = logging.getLogger(__name__)


def _usage(with_stores: bool = False) -> str:
    lines = [
        _("Usage:"),
        html.escape(_("/staff invite cashier|support|admin — a one-time link, valid 24 hours")),
        html.escape(_("/staff list — everyone with a staff role")),
        html.escape(_("/staff remove <member> — take back a role given in chat")),
    ]
    if with_stores:
        lines.append(html.escape(_("/staff store <member> <store|none> — the store they work at")))
    return "\n".join(lines)


async def staff_command(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    bot: Bot,
    role: Role,
    static_roles: StaticRoles,
    clock: Callable[[], datetime],
) -> None:
    parts = (command.args or "").split(maxsplit=1)
    action = parts[0].lower() if parts else ""
    rest = parts[1].strip() if len(parts) > 1 else ""
    actor = message.from_user.id if message.from_user else 0
    if action == "invite":
        await _invite(message, session, program, i18n, bot, rest, actor, clock())
    elif action == "list" and not rest:
        await _list(message, session, program, i18n, static_roles)
    elif action == "remove" and rest:
        await _remove(message, session, i18n, bot, static_roles, rest, actor, role, clock())
    elif action == "store" and program.stores and len(words := rest.split()) == 2:
        await _store(message, session, program, i18n, static_roles, words[0], words[1], actor, clock())
    else:
        await message.answer(_usage(bool(program.stores)))


async def _invite(
    message: Message,
    session: DbSession,
    program: Program,
    i18n: I18n,
    bot: Bot,
    wanted: str,
    actor: int,
    now: datetime,
) -> None:
    by_name = {r.value: r for r in staffing.INVITABLE}
    invited = by_name.get(wanted.lower())
    if invited is None:
        await message.answer(
            _("There is no role {role} to invite to: choose cashier, support or admin.").format(
                role=f"<code>{html.escape(wanted[:32])}</code>" if wanted else "—"
            )
            + "\n\n"
            + _usage()
        )
        return
    invite = await staffing.create_invite(session, role=invited, actor_id=actor, now=now)
    me = await bot.me()
    link = f"https://t.me/{me.username}?start={invite.payload}"
    await message.answer(
        _(
            "🔑 A one-time invitation with the role {role}, valid until {until}:\n<code>{link}</code>\n\n"
            "Send it privately to your colleague: the first person to open it gets the role, at once. "
            "It is in the audit log (/audit)."
        ).format(
            role=role_name(invited),
            until=when(invite.expires_at, program.tz, i18n.current_locale),
            link=html.escape(link),
        )
    )


async def _store(
    message: Message,
    session: DbSession,
    program: Program,
    i18n: I18n,
    static: StaticRoles,
    ref: str,
    key: str,
    actor: int,
    now: datetime,
) -> None:
    language = i18n.current_locale.replace("_", "-")
    clear = key.lower() in ("none", "-")
    try:
        done = await stores.assign(
            session, program, static, ref=ref, store=None if clear else key.lower(), actor_id=actor, now=now
        )
    except stores.UnknownStore:
        await message.answer(html.escape(unknown_store(program, key, language)))
        return
    shown = html.escape(done.name or ref)
    if done.outcome is stores.AssignOutcome.NOT_FOUND:
        await message.answer(_("No member or Telegram id found for {ref}.").format(ref=html.escape(ref)))
    elif done.outcome is stores.AssignOutcome.NOT_STAFF:
        await message.answer(_("{ref} has no staff role: nothing was changed.").format(ref=shown))
    else:
        await message.answer(store_assigned(done.name or ref, done.store, language, html.escape))


async def _list(message: Message, session: DbSession, program: Program, i18n: I18n, static: StaticRoles) -> None:
    entries = await staffing.staff_list(session, static)
    at = await stores.assignments(session) if program.stores else {}
    if not entries:
        await message.answer(_("Nobody has a staff role yet. Invite someone with /staff invite cashier."))
        return
    out = [_("👥 <b>Staff</b>")]
    for entry in entries:
        who = html.escape(entry.name) if entry.name else _("not a member")
        if entry.username:
            who += f" @{html.escape(entry.username)}"
        if entry.code:
            who += f" <code>{entry.code}</code>"
        sources = role_sources(entry, program.tz, i18n.current_locale, code)
        if (store := program.store(at.get(entry.telegram_id))) is not None:
            sources.append(
                _("works at {store}").format(store=html.escape(store.name_in(i18n.current_locale.replace("_", "-"))))
            )
        out.append(
            "• <b>{role}</b> · <code>{id}</code> · {who}\n  {sources}".format(
                role=role_name(entry.role), id=entry.telegram_id, who=who, sources="; ".join(sources)
            )
        )
    await message.answer("\n".join(out))


async def _remove(
    message: Message,
    session: DbSession,
    i18n: I18n,
    bot: Bot,
    static: StaticRoles,
    ref: str,
    actor: int,
    actor_role: Role,
    now: datetime,
) -> None:
    result = await staffing.remove_role(session, static, ref=ref, actor_id=actor, actor_role=actor_role, now=now)
    shown = html.escape(ref[:64])
    if result.outcome is RemoveOutcome.NOT_FOUND:
        await message.answer(
            _("No member or Telegram id found for {ref}. /staff list shows everyone with a staff role.").format(
                ref=shown
            )
        )
        return
    if result.outcome is RemoveOutcome.NOT_STAFF:
        await message.answer(_("{ref} has no staff role: nothing was changed.").format(ref=shown))
        return
    if result.outcome is RemoveOutcome.SETTINGS_ONLY:
        await message.answer(
            _(
                "{ref} is staff because of the bot's settings ({settings}), which cannot be changed in chat: "
                "remove the id there and restart the bot. Nothing was changed."
            ).format(ref=shown, settings=settings_of(result.from_settings, code))
        )
        return
    if result.outcome is RemoveOutcome.OWN:
        await message.answer(_("You cannot remove your own role: another admin can. Nothing was changed."))
        return
    if result.outcome is RemoveOutcome.OWNER:
        await message.answer(_("Only an owner can remove an owner's role. Nothing was changed."))
        return
    assert result.removed is not None and result.telegram_id is not None
    text = _("✅ {ref} no longer has the role {role}. It is in the audit log (/audit).").format(
        ref=shown, role=role_name(result.removed)
    )
    if result.from_settings:
        text += "\n" + _("They keep the role {role} from the bot's settings ({settings}).").format(
            role=role_name(result.now_role), settings=settings_of(result.from_settings, code)
        )
    await message.answer(text)
    await refresh_chat_menu(bot, i18n, result.telegram_id, result.now_role, result.language)


async def open_invite(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    bot: Bot,
    member: MemberView | None,
    static_roles: StaticRoles,
    clock: Callable[[], datetime],
) -> None:
    user = message.from_user
    if user is None:
        return
    result = await staffing.accept_invite(
        session, static_roles, payload=command.args or "", telegram_id=user.id, now=clock()
    )
    outcome, invited = result.outcome, result.role
    if outcome is Outcome.JOINED and invited is not None:
        await message.answer(
            _(
                "✅ Welcome to the team of {program}! Your role: {role}. Your commands are in the menu, and /help "
                "lists them."
            ).format(program=html.escape(program.name), role=role_name(invited))
        )
        await refresh_chat_menu(bot, i18n, user.id, result.now_role, member.language if member else None)
        if result.invited_by is not None and result.invited_by != user.id:
            await _tell_inviter(bot, i18n, program, result.invited_by, user.full_name, user.id, invited)
        return
    texts = {
        Outcome.UNKNOWN: _("This staff invitation link is not valid. Ask an admin for a new one."),
        Outcome.EXPIRED: _("This staff invitation has expired. Ask an admin for a new one."),
        Outcome.USED: _("This staff invitation was already used. Ask an admin for a new one."),
        Outcome.USED_BY_YOU: _("You accepted this invitation already: nothing more to do."),
        Outcome.HELD: _(
            "Your role is {role} already, so this invitation was not used: it is still open for someone else."
        ),
        Outcome.SETTINGS: _(
            "Your role comes from the bot's settings and outranks this invitation, so it was not used. Ask the "
            "owner to change your role in the settings."
        ),
    }
    await message.answer(texts[outcome].format(role=role_name(result.now_role)))


async def _tell_inviter(
    bot: Bot, i18n: I18n, program: Program, inviter: int, name: str, telegram_id: int, role: Role
) -> None:
    with speaking(i18n, program.staff_language):
        text = _("{name} (<code>{id}</code>) accepted your invitation. Their role: {role}.").format(
            name=html.escape(name), id=telegram_id, role=role_name(role)
        )
    try:
        await bot.send_message(inviter, text)
    except TelegramAPIError:
        log.warning("could not tell %s that their staff invitation was accepted", inviter, exc_info=True)


def router() -> Router:
    router = Router(name="staffing")
    # Before the start router: an invitation link makes staff, it does not join the program.
    router.message.register(
        open_invite, CommandStart(deep_link=True, ignore_case=True, magic=F.args.startswith(staffing.PREFIX))
    )
    router.message.register(staff_command, slash("staff"), HasPermission(Permission.MANAGE_STAFF))
    return router


def code(text: str) -> str:
    return f"<code>{text}</code>"
