"""Who is asking: every Mini App request carries Telegram's signed ``initData`` (``Authorization: tma <initData>``),
checked with the bot token and an age limit. No cookies, so no cross-site request forgery: a page from elsewhere
cannot make a browser send the header."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aiogram.utils.web_app import WebAppInitData, safe_parse_webapp_init_data

from loyalty.members import MemberView, identify
from loyalty.roles import Role, StaticRoles
from storage.database import DbSession

SCHEME = "tma"
MAX_INIT_DATA = 4096  # Telegram's initData is well under 1 KB; anything near this is not from Telegram


class NotAuthenticated(Exception):
    """The request's initData is missing, forged, not a user's, or too old."""


@dataclass(frozen=True)
class Viewer:
    """The person behind a request: their Telegram id, member record (None before they joined) and role."""

    telegram_id: int
    first_name: str
    language_code: str | None
    member: MemberView | None
    role: Role


def verified(token: str, header: str | None, now: datetime, max_age: timedelta) -> WebAppInitData:
    """The initData in an Authorization header, if Telegram signed it for this bot within ``max_age``."""
    scheme, _, init_data = (header or "").partition(" ")
    if scheme.lower() != SCHEME or not init_data or len(init_data) > MAX_INIT_DATA:
        raise NotAuthenticated("no initData")
    try:
        data = safe_parse_webapp_init_data(token, init_data.strip())
    except (ValueError, TypeError) as exc:  # a forged hash, or fields that are not what Telegram sends
        raise NotAuthenticated("initData is not signed for this bot") from exc
    if data.user is None:
        raise NotAuthenticated("initData names no user")
    signed = data.auth_date
    # A little slack for clocks: Telegram's and ours may differ by seconds.
    if signed > now + timedelta(minutes=5) or now - signed > max_age:
        raise NotAuthenticated("initData is too old")
    return data


async def viewer_of(session: DbSession, static: StaticRoles, data: WebAppInitData) -> Viewer:
    assert data.user is not None
    member, role = await identify(session, static, data.user.id)
    return Viewer(data.user.id, data.user.first_name, data.user.language_code, member, role)
