"""Staff roles in words: their names, the settings they come from, and where a person's role comes from. One
wording for the chat's /staff and the Mini App's console."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __
from aiogram.utils.i18n.lazy_proxy import LazyProxy

from loyalty.program import StoreRule
from loyalty.roles import Role
from loyalty.staffing import StaffEntry
from notifications.texts import when

ROLE_NAMES: dict[Role, LazyProxy] = {
    Role.OWNER: __("owner"),
    Role.ADMIN: __("admin"),
    Role.CASHIER: __("cashier"),
    Role.SUPPORT: __("support"),
    Role.MEMBER: __("member"),
}
# Where each role from settings comes from: the one place to change it is there, not in chat.
SETTINGS = {Role.ADMIN: "LOYALTY_ADMIN_IDS", Role.CASHIER: "LOYALTY_CASHIER_IDS", Role.SUPPORT: "LOYALTY_SUPPORT_IDS"}


def role_name(role: Role) -> str:
    return str(ROLE_NAMES[role])


def settings_of(roles: frozenset[Role], quote: Callable[[str], str] = str) -> str:
    """The settings that give these roles; ``quote``: how a setting's name is shown (``<code>`` in chat)."""
    return ", ".join(quote(SETTINGS[role]) for role in sorted(roles, key=list(SETTINGS).index))


def role_sources(entry: StaffEntry, tz: ZoneInfo, locale: str, quote: Callable[[str], str] = str) -> list[str]:
    """Each role a person holds and where it comes from: a setting, an invitation, or the database."""
    sources = [
        _("{role} (settings: {setting})").format(role=role_name(held), setting=quote(SETTINGS[held]))
        for held in sorted(entry.from_settings, key=list(SETTINGS).index)
    ]
    if entry.granted is not None:
        since = when(entry.granted_at, tz, locale) if entry.granted_at else "—"
        if entry.invited_by is not None:
            sources.append(
                _("{role} (invited by {inviter}, {since})").format(
                    role=role_name(entry.granted), inviter=entry.invited_by, since=since
                )
            )
        else:
            sources.append(_("{role} (database, {since})").format(role=role_name(entry.granted), since=since))
    return sources


def store_assigned(name: str, store: StoreRule | None, language: str, quote: Callable[[str], str] = str) -> str:
    """What an admin is told after setting the store someone works at (``quote``: escape for a chat message)."""
    if store is None:
        return _("✅ {name} works at no particular store now. It is in the audit log (/audit).").format(
            name=quote(name)
        )
    return _(
        "✅ {name} works at {store} now: their purchases, refunds and coupons are recorded there. It is in the "
        "audit log (/audit)."
    ).format(name=quote(name), store=quote(store.name_in(language)))
