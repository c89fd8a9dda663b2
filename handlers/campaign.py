"""/campaign: admins start, list and end time-limited promotions from chat."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime

from aiogram import Router
from aiogram.filters import CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission, slash
from loyalty.campaigns import (
    MAX_DAYS,
    MAX_NAME,
    NameProblem,
    NameRefused,
    end_campaign,
    name_in,
    parse_effect,
    running_campaigns,
    set_name,
    start_campaign,
)
from loyalty.numbers import is_whole, whole
from loyalty.program import Program
from loyalty.purchases import CATEGORY_RE
from loyalty.roles import Permission
from notifications.texts import when
from storage.database import DbSession


def _usage() -> str:
    return _("Usage: {usage}").format(
        usage=html.escape(
            _(
                "/campaign add <x2|+50> <days> <name> [category=…] | /campaign list | /campaign end <id> | "
                "/campaign name <id> <en|zh-Hans|zh-Hant> <name>"
            )
        )
    )


async def campaign(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    action, _sep, rest = (command.args or "").strip().partition(" ")
    now = clock()
    if action == "list":
        running = await running_campaigns(session, now)
        language = i18n.current_locale.replace("_", "-")
        lines = [
            _("#{id} {name} ({effect}{category}) until {until}").format(
                id=c.id,
                name=html.escape(name_in(c, language)),
                effect=f"×{c.multiplier}" if c.multiplier else f"+{c.bonus}",
                category=f", {c.category}" if c.category else "",
                until=when(c.ends_at, program.tz, i18n.current_locale),
            )
            for c in running
        ]
        await message.answer("\n".join(lines) or _("No campaigns are running."))
    elif action == "end":
        campaign_id = whole(rest)
        if campaign_id is None or not await end_campaign(session, campaign_id, now):
            await message.answer(_("No running campaign {ref}.").format(ref=html.escape(rest.strip()[:16])))
        else:
            await message.answer(_("Campaign #{id} has ended.").format(id=campaign_id))
    elif action == "name":
        await _name(message, session, rest.split(maxsplit=2))
    elif action == "add":
        await _add(message, session, program, i18n, rest.split(), now, message.from_user.id if message.from_user else 0)
    else:
        await message.answer(_usage())


async def _name(message: Message, session: DbSession, words: list[str]) -> None:
    """/campaign name <id> <en|zh-Hans|zh-Hant> <name>: the campaign's name for members reading that language."""
    if len(words) < 3:
        await message.answer(_usage())
        return
    campaign_id = whole(words[0])
    try:
        if campaign_id is None:
            raise NameRefused(NameProblem.NO_CAMPAIGN)
        named = await set_name(session, campaign_id, words[1], words[2])
    except NameRefused as refused:
        await message.answer(_name_refused(refused.problem, words))
        return
    await message.answer(
        _("Campaign #{id} is now called {name} in {language}.").format(
            id=campaign_id, name=html.escape(named), language=html.escape(words[1])
        )
    )


def _name_refused(problem: NameProblem, words: list[str]) -> str:
    if problem is NameProblem.NO_CAMPAIGN:
        return _("No campaign {ref}.").format(ref=html.escape(words[0][:16]))
    if problem is NameProblem.LANGUAGE:
        return _("Campaigns can be named in en, zh-Hans or zh-Hant, not {language}.").format(
            language=html.escape(words[1][:16])
        )
    if problem is NameProblem.TOO_LONG:
        return ngettext(
            "A campaign's name may be up to {max} character.",
            "A campaign's name may be up to {max} characters.",
            MAX_NAME,
        ).format(max=MAX_NAME)
    return _usage()


async def _add(
    message: Message,
    session: DbSession,
    program: Program,
    i18n: I18n,
    words: list[str],
    now: datetime,
    actor: int,
) -> None:
    category = None
    for word in list(words):
        if word.lower().startswith("category="):
            category = word.split("=", 1)[1].lower()
            words.remove(word)
    if len(words) < 3:
        await message.answer(_usage())
        return
    effect = parse_effect(words[0])
    if effect is None:
        await message.answer(_("The effect must be a multiplier like x2 (up to x10) or bonus points like +50."))
        return
    if not is_whole(words[1]) or not 1 <= int(words[1]) <= MAX_DAYS:
        await message.answer(_("The duration must be a number of days from 1 to {max}.").format(max=MAX_DAYS))
        return
    if category is not None and not CATEGORY_RE.match(category):
        await message.answer(_("The category may use letters, digits, - and _ (up to 32)."))
        return
    started = await start_campaign(
        session, name=" ".join(words[2:]), effect=effect, days=int(words[1]), category=category, actor_id=actor, now=now
    )
    await message.answer(
        _("✅ Campaign #{id} “{name}” runs until {until}.").format(
            id=started.id, name=html.escape(started.name), until=when(started.ends_at, program.tz, i18n.current_locale)
        )
    )


def router() -> Router:
    router = Router(name="campaign")
    router.message.register(campaign, slash("campaign"), HasPermission(Permission.MANAGE_REWARDS))
    return router
