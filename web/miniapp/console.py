"""The merchant console, for admins: find a member, read everything about them, adjust their points, correct their
birthday, refund a purchase (the till's refund), give or take back a staff role; list staff and make invitations.

Every endpoint checks on the server that the viewer is an admin (``Permission.MANAGE_STAFF``, which only owners and
admins hold) and holds the action's own permission, whatever the page showed. Each change calls the ``loyalty``
function the chat's command calls (/adjust, /setbirthday, /staff, /refund), so the rules and the audit log are the
chat's."""

from __future__ import annotations

import base64
import hashlib
import hmac

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiohttp import web
from pydantic import Field

from loyalty import profile, staffing, stores, vip
from loyalty.account import MAX_ADJUSTMENT, adjust
from loyalty.audit import OwnAccount
from loyalty.console import member_file
from loyalty.ledger import InsufficientPoints
from loyalty.members import SEARCH_LIMIT, find_member, search_members
from loyalty.purchases import from_minor
from loyalty.rewards import title_for
from loyalty.roles import Permission, Role
from loyalty.staffing import GrantOutcome, RemoveOutcome
from notifications.ledger import entry_label
from notifications.menus import refresh_chat_menu
from notifications.purchases import notify_adjustment
from notifications.refusals import own_account_refused, unknown_store
from notifications.staffing import role_name, role_sources, settings_of, store_assigned
from notifications.texts import birthday_problem, birthday_text, day, locale_of, money, when
from storage.models import Member
from web.miniapp.core import (
    LANGUAGE,
    VIEWER,
    Action,
    Model,
    Refused,
    Screen,
    bad_input,
    json_of,
    later,
    mount,
    read,
    require,
    static_roles,
)
from web.miniapp.member import KEY, EntryOut
from web.services import SERVICES, WebServices

MAX_QUERY = 64
MAX_REASON = 256


def _admin(request: web.Request, permission: Permission) -> None:
    """The console is for admins; each action also needs its own permission, as the chat's command does."""
    require(request, Permission.MANAGE_STAFF)
    require(request, permission)


def _query(text: str) -> str:
    query = " ".join(text.split())
    if len(query) > MAX_QUERY or not query.isprintable():
        raise bad_input()
    return query


async def _member(services: WebServices, ref: str) -> Member:
    ref = ref.strip()
    if not ref or len(ref) > MAX_QUERY or not ref.isprintable():
        raise bad_input()
    async with services.sessions() as session:
        member = await find_member(session, ref)
    if member is None or member.id is None:
        raise Refused(404, "member_not_found", _("No member found for {ref}.").format(ref=ref))
    return member


# ------------------------------------------------------------------------------------------------ members


class FoundOut(Model):
    code: str
    first_name: str
    username: str | None
    phone: str | None
    points: int
    tier: str | None


class MembersOut(Model):
    query: str
    results: list[FoundOut] = Field(description="At most 20: exact code, Telegram id or @username first")
    limit: int


async def load_members(request: web.Request) -> MembersOut:
    _admin(request, Permission.LOOK_UP_MEMBER)
    services = request.app[SERVICES]
    query = _query(request.query.get("q", ""))
    found: list[Member] = []
    if query:
        async with services.sessions() as session:
            found = await search_members(session, query)
    language = request[LANGUAGE]
    tiers = services.program.tiers
    return MembersOut(
        query=query,
        results=[
            FoundOut(
                code=m.code,
                first_name=m.first_name,
                username=m.username,
                phone=m.phone,
                points=m.points,
                tier=level.name_in(language) if (level := tiers.level(m.tier)) else None,
            )
            for m in found
        ],
        limit=SEARCH_LIMIT,
    )


class LotOut(Model):
    remaining: int
    points: int
    expires: str | None
    label: str


class PurchaseOut(Model):
    purchase_id: int
    date: str
    amount: str
    points: int
    receipt: str | None
    refunded: str | None = Field(description="How much was refunded, if any")
    pending_until: str | None = Field(description="While its points wait for the return window: until when")
    refundable: bool


class MemberCouponOut(Model):
    code: str
    title: str
    state: str = Field(description="open, used or expired")
    date: str


class ThreadsOut(Model):
    total: int
    open: int
    latest_opened: str | None
    latest_open: bool


class NpsOut(Model):
    score: int
    reason: str | None
    date: str


class ReferralsOut(Model):
    invited: int
    joined: int
    qualified: int
    points: int
    referred_by: str | None


class RoleOut(Model):
    key: str
    name: str


class MemberPageOut(Model):
    code: str
    first_name: str
    last_name: str | None
    username: str | None
    phone: str | None
    language: str
    joined: str
    tier: str | None
    role: str
    staff: bool = Field(description="Holds a staff role given in the database, which can be taken back")
    points: int
    pending_points: int = Field(description="Not spendable yet: purchases inside the return window")
    usual_store: str | None = Field(default=None, description="The store they buy at most, by name")
    lifetime_points: int
    birthday: str | None
    birthday_key: str | None = Field(description="The birthday as /setbirthday takes it: YYYY-MM-DD or MM-DD")
    lots: list[LotOut]
    ledger: list[EntryOut]
    purchases: list[PurchaseOut]
    coupons: list[MemberCouponOut]
    threads: ThreadsOut
    nps: list[NpsOut]
    referrals: ReferralsOut
    roles: list[RoleOut] = Field(description="The roles an admin can give")
    vip_until: str | None = Field(default=None, description="The end of the member's VIP, while VIP")
    vip_renews: bool | None = Field(
        default=None, description="None: no VIP subscription running; else whether Telegram renews it"
    )


async def load_member(request: web.Request) -> MemberPageOut:
    _admin(request, Permission.LOOK_UP_MEMBER)
    services = request.app[SERVICES]
    program, language = services.program, request[LANGUAGE]
    locale = locale_of(language)
    found = await _member(services, request.query.get("ref", ""))
    assert found.id is not None
    now = services.clock()
    async with services.sessions() as session:
        file = await member_file(session, static_roles(services), found.id, now)
        vip_status = await vip.status_of(session, found.id, now)
    member = file.member
    born = profile.birthday_of(member)
    tier = program.tiers.level(member.tier)
    latest = file.threads.latest
    return MemberPageOut(
        code=member.code,
        first_name=member.first_name,
        last_name=member.last_name,
        username=member.username,
        phone=member.phone,
        language=member.language,
        joined=day(member.joined_at, program.tz, locale),
        tier=tier.name_in(language) if tier else None,
        role=role_name(file.role),
        staff=file.granted is not None,
        points=member.points,
        pending_points=member.pending_points,
        usual_store=usual.name_in(language) if (usual := program.store(file.usual_store)) else None,
        lifetime_points=member.lifetime_points,
        birthday=birthday_text(born, locale) if born else None,
        birthday_key=str(born) if born else None,
        lots=[
            LotOut(
                remaining=lot.remaining,
                points=lot.points,
                expires=day(lot.expires_at, program.tz, locale) if lot.expires_at else None,
                label=entry_label(lot, program, escape=False),
            )
            for lot in file.lots
        ],
        ledger=[
            EntryOut(
                date=day(e.created_at, program.tz, locale),
                points=e.points,
                label=entry_label(e, program, file.ledger.promotions.get(e.purchase_id or 0), escape=False),
            )
            for e in file.ledger.entries
        ],
        purchases=[
            PurchaseOut(
                purchase_id=p.id or 0,
                date=when(p.created_at, program.tz, locale),
                amount=money(from_minor(p.amount_minor, program), p.currency, locale),
                points=p.points,
                receipt=p.external_id if p.source in ("receipt", "api") else None,
                refunded=money(from_minor(p.refunded_minor, program), p.currency, locale) if p.refunded_minor else None,
                pending_until=day(p.available_at, program.tz, locale) if p.pending_points and p.available_at else None,
                refundable=p.refunded_minor < p.amount_minor,
            )
            for p in file.purchases
        ],
        coupons=[
            MemberCouponOut(
                code=c.code,
                title=title_for(r, language),
                state="used" if c.used_at else "expired" if c.expires_at <= now else "open",
                date=day(c.used_at or c.expires_at, program.tz, locale),
            )
            for c, r in file.coupons
        ],
        threads=ThreadsOut(
            total=file.threads.total,
            open=file.threads.open,
            latest_opened=day(latest.opened_at, program.tz, locale) if latest else None,
            latest_open=file.threads.latest_open,
        ),
        nps=[
            NpsOut(score=s.score or 0, reason=s.reason, date=day(s.scored_at or s.sent_at, program.tz, locale))
            for s in file.nps
        ],
        vip_until=day(vip_status.vip_until, program.tz, locale)
        if vip_status.vip(now) and vip_status.vip_until
        else None,
        vip_renews=vip_status.renews if vip_status.subscription else None,
        referrals=ReferralsOut(
            invited=file.referrals.invited,
            joined=file.referrals.joined,
            qualified=file.referrals.qualified,
            points=file.referrals.points,
            referred_by=file.referred_by,
        ),
        roles=[RoleOut(key=r.value, name=role_name(r)) for r in staffing.INVITABLE],
    )


# ------------------------------------------------------------------------------------------------ adjust


class AdjustIn(Model):
    member: str = Field(min_length=1, max_length=MAX_QUERY)
    points: int = Field(ge=-MAX_ADJUSTMENT, le=MAX_ADJUSTMENT, description="Signed, not zero")
    reason: str = Field(min_length=1, max_length=MAX_REASON, description="What the member is told")
    key: str = Field(pattern=KEY, description="Generated by the page for this submission: a retry adjusts once")


class AdjustedOut(Model):
    message: str
    balance: int
    replayed: bool


async def adjust_points(request: web.Request) -> web.Response:
    _admin(request, Permission.ADJUST_POINTS)
    services = request.app[SERVICES]
    body = await read(request, AdjustIn)
    reason = " ".join(body.reason.split())
    if body.points == 0:
        raise Refused(400, "invalid_points", _("Points must be a signed whole number like +50 or -20, not zero."))
    if not reason or not reason.isprintable():
        raise bad_input()
    member = await _member(services, body.member)
    assert member.id is not None
    actor = request[VIEWER].telegram_id
    name = member.first_name  # read now: a refused adjustment rolls back
    async with services.sessions() as session:
        try:
            result = await adjust(
                session,
                services.program,
                member_id=member.id,
                delta=body.points,
                reason=reason,
                actor_id=actor,
                key=f"adjust:app:{actor}:{body.key}",
                now=services.clock(),
            )
        except OwnAccount as own:
            raise Refused(403, "own_account", own_account_refused()) from own
        except InsufficientPoints as short:
            raise Refused(
                409,
                "insufficient_points",
                ngettext(
                    "{name} has only {points} point; nothing was changed.",
                    "{name} has only {points} points; nothing was changed.",
                    short.balance,
                ).format(name=name, points=short.balance),
            ) from short
    if not result.created:
        message = _("This adjustment was already made. Balance: {balance}.").format(balance=result.balance)
    else:
        message = ngettext(
            "✅ {delta:+d} point for {name}. Balance: {balance}.",
            "✅ {delta:+d} points for {name}. Balance: {balance}.",
            abs(body.points),
        ).format(delta=body.points, name=name, balance=result.balance)
        notice = notify_adjustment(services.bot, services.i18n, member, body.points, reason, result.balance)
        later(request, notice, "adjustment notice")
    out = AdjustedOut(message=message, balance=result.balance, replayed=not result.created)
    return json_of(out, 201 if result.created else 200)


# ------------------------------------------------------------------------------------------------ birthday


class StaffBirthdayIn(Model):
    member: str = Field(min_length=1, max_length=MAX_QUERY)
    birthday: str | None = Field(
        default=None, max_length=32, description="As /setbirthday reads it: 1990-07-14, 07-14, 14 July; none clears"
    )


class DoneOut(Model):
    message: str


async def correct_birthday(request: web.Request) -> web.Response:
    _admin(request, Permission.EDIT_PROFILE)
    services = request.app[SERVICES]
    body = await read(request, StaffBirthdayIn)
    member = await _member(services, body.member)
    assert member.id is not None
    now = services.clock()
    locale = locale_of(request[LANGUAGE])
    born = None
    text = (body.birthday or "").strip()
    if text and text.lower() != "clear":
        try:
            born = profile.parse_birthday(text, now.astimezone(services.program.tz).date())
        except profile.BadBirthday as bad:
            raise Refused(400, "invalid_birthday", birthday_problem(bad, locale)) from bad
    name, code = member.first_name, member.code
    async with services.sessions() as session:
        await profile.set_birthday(session, services.program, member.id, born, now, by_staff=True)
    shown = birthday_text(born, locale) if born else "—"
    message = _("Birthday of {name} ({code}) is now {birthday}.").format(name=name, code=code, birthday=shown)
    return json_of(DoneOut(message=message))


# ------------------------------------------------------------------------------------------------ staff roles


class GrantIn(Model):
    member: str = Field(min_length=1, max_length=MAX_QUERY)
    role: Role


class RemoveIn(Model):
    ref: str = Field(min_length=1, max_length=MAX_QUERY, description="Member code, Telegram id or @username")


class StaffChangedOut(Model):
    message: str
    role: str = Field(description="Their role now")


async def grant_role(request: web.Request) -> web.Response:
    _admin(request, Permission.MANAGE_STAFF)
    services = request.app[SERVICES]
    body = await read(request, GrantIn)
    if body.role not in staffing.INVITABLE:
        raise bad_input()
    member = await _member(services, body.member)
    assert member.id is not None
    viewer = request[VIEWER]
    async with services.sessions() as session:
        done = await staffing.grant_role(
            session,
            static_roles(services),
            member_id=member.id,
            role=body.role,
            actor_id=viewer.telegram_id,
            actor_role=viewer.role,
            now=services.clock(),
        )
    name, role, now_role = member.first_name, role_name(body.role), role_name(done.now_role)
    if done.outcome is GrantOutcome.OWN:
        raise Refused(403, "own", _("You cannot change your own role: another admin can. Nothing was changed."))
    if done.outcome is GrantOutcome.OWNER:
        raise Refused(403, "owner", _("Only an owner can change an owner's role. Nothing was changed."))
    if done.outcome is GrantOutcome.HELD:
        raise Refused(
            409, "held", _("{name} has the role {role} already: nothing was changed.").format(name=name, role=now_role)
        )
    if done.outcome is GrantOutcome.SETTINGS:
        raise Refused(
            409,
            "settings",
            _("{name}'s role {role} comes from the bot's settings and outranks it: nothing was changed.").format(
                name=name, role=now_role
            ),
        )
    message = _("✅ {name} now has the role {role}. It is in the audit log (/audit).").format(name=name, role=role)
    later(request, _refresh_menu(services, member.telegram_id, done.now_role, member.language), "command menu")
    return json_of(StaffChangedOut(message=message, role=done.now_role.value))


async def remove_role(request: web.Request) -> web.Response:
    _admin(request, Permission.MANAGE_STAFF)
    services = request.app[SERVICES]
    body = await read(request, RemoveIn)
    ref = body.ref.strip()
    viewer = request[VIEWER]
    async with services.sessions() as session:
        result = await staffing.remove_role(
            session,
            static_roles(services),
            ref=ref,
            actor_id=viewer.telegram_id,
            actor_role=viewer.role,
            now=services.clock(),
        )
    shown = result.name or ref
    if result.outcome is RemoveOutcome.NOT_FOUND:
        raise Refused(
            404,
            "not_found",
            _("No member or Telegram id found for {ref}. /staff list shows everyone with a staff role.").format(
                ref=ref
            ),
        )
    if result.outcome is RemoveOutcome.NOT_STAFF:
        raise Refused(409, "not_staff", _("{ref} has no staff role: nothing was changed.").format(ref=shown))
    if result.outcome is RemoveOutcome.SETTINGS_ONLY:
        raise Refused(
            409,
            "settings_only",
            _(
                "{ref} is staff because of the bot's settings ({settings}), which cannot be changed in chat: "
                "remove the id there and restart the bot. Nothing was changed."
            ).format(ref=shown, settings=settings_of(result.from_settings)),
        )
    if result.outcome is RemoveOutcome.OWN:
        raise Refused(403, "own", _("You cannot remove your own role: another admin can. Nothing was changed."))
    if result.outcome is RemoveOutcome.OWNER:
        raise Refused(403, "owner", _("Only an owner can remove an owner's role. Nothing was changed."))
    assert result.removed is not None and result.telegram_id is not None
    later(request, _refresh_menu(services, result.telegram_id, result.now_role, result.language), "command menu")
    message = _("✅ {ref} no longer has the role {role}. It is in the audit log (/audit).").format(
        ref=shown, role=role_name(result.removed)
    )
    if result.from_settings:
        message += "\n" + _("They keep the role {role} from the bot's settings ({settings}).").format(
            role=role_name(result.now_role), settings=settings_of(result.from_settings)
        )
    return json_of(StaffChangedOut(message=message, role=result.now_role.value))


async def _refresh_menu(services: WebServices, telegram_id: int, role: Role, language: str | None) -> None:
    # As after /staff in chat: their command menu follows the new role.
    await refresh_chat_menu(services.bot, services.i18n, telegram_id, role, language)


# ------------------------------------------------------------------------------------------------ staff


class StaffRowOut(Model):
    telegram_id: int
    role: str
    name: str | None
    username: str | None
    code: str | None
    sources: list[str] = Field(description="Where the role comes from: settings, an invitation, the database")
    removable: bool = Field(description="Has a role in the database, which can be taken back")
    store: str | None = Field(default=None, description="The [[stores]] key of the store they work at")


class StoreOut(Model):
    key: str
    name: str


class StaffOut(Model):
    staff: list[StaffRowOut]
    roles: list[RoleOut] = Field(description="The roles an invitation can give")
    stores: list[StoreOut] = Field(description="The program's stores, to assign staff to (empty: no stores)")


async def load_staff(request: web.Request) -> StaffOut:
    _admin(request, Permission.MANAGE_STAFF)
    services = request.app[SERVICES]
    program, locale = services.program, locale_of(request[LANGUAGE])
    async with services.sessions() as session:
        entries = await staffing.staff_list(session, static_roles(services))
        at = await stores.assignments(session) if program.stores else {}
    rows = []
    for entry in entries:
        sources = role_sources(entry, program.tz, locale)
        rows.append(
            StaffRowOut(
                telegram_id=entry.telegram_id,
                role=role_name(entry.role),
                name=entry.name,
                username=entry.username,
                code=entry.code,
                sources=sources,
                removable=entry.granted is not None,
                store=at.get(entry.telegram_id) if program.store(at.get(entry.telegram_id)) else None,
            )
        )
    language = request[LANGUAGE]
    return StaffOut(
        staff=rows,
        roles=[RoleOut(key=r.value, name=role_name(r)) for r in staffing.INVITABLE],
        stores=[StoreOut(key=store.key, name=store.name_in(language)) for store in program.stores],
    )


class StoreIn(Model):
    ref: str = Field(min_length=1, max_length=MAX_QUERY, description="Member code, Telegram id or @username")
    store: str | None = Field(default=None, max_length=32, description="A [[stores]] key; empty or none: no store")


async def assign_store(request: web.Request) -> web.Response:
    _admin(request, Permission.MANAGE_STAFF)
    services = request.app[SERVICES]
    program, language = services.program, request[LANGUAGE]
    body = await read(request, StoreIn)
    key = (body.store or "").strip().lower() or None
    async with services.sessions() as session:
        try:
            done = await stores.assign(
                session,
                program,
                static_roles(services),
                ref=body.ref.strip(),
                store=key,
                actor_id=request[VIEWER].telegram_id,
                now=services.clock(),
            )
        except stores.UnknownStore as unknown:
            raise Refused(400, "unknown_store", unknown_store(program, unknown.key, language)) from unknown
    shown = done.name or body.ref
    if done.outcome is stores.AssignOutcome.NOT_FOUND:
        raise Refused(404, "not_found", _("No member or Telegram id found for {ref}.").format(ref=body.ref))
    if done.outcome is stores.AssignOutcome.NOT_STAFF:
        raise Refused(409, "not_staff", _("{ref} has no staff role: nothing was changed.").format(ref=shown))
    message = store_assigned(shown, done.store, language)
    return json_of(DoneOut(message=message))


class InviteIn(Model):
    role: Role
    key: str = Field(pattern=KEY, description="Generated by the page: a retry gives the same invitation")


class InviteMadeOut(Model):
    message: str
    link: str
    share_text: str
    expires: str


def invite_token(secret: str, actor: int, key: str) -> str:
    """The invitation's token derived from the request's key with the bot's secret: the same request again finds
    the same invitation, and nobody without the secret can work a token out from a key."""
    digest = hmac.new(secret.encode(), f"staff-invite:{actor}:{key}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


async def make_invite(request: web.Request) -> web.Response:
    _admin(request, Permission.MANAGE_STAFF)
    services = request.app[SERVICES]
    body = await read(request, InviteIn)
    if body.role not in staffing.INVITABLE:
        raise bad_input()
    actor = request[VIEWER].telegram_id
    async with services.sessions() as session:
        invite = await staffing.create_invite(
            session,
            role=body.role,
            actor_id=actor,
            now=services.clock(),
            token=invite_token(services.bot.token, actor, body.key),
        )
    me = await services.bot.me()
    link = f"https://t.me/{me.username}?start={invite.payload}"
    until = when(invite.expires_at, services.program.tz, locale_of(request[LANGUAGE]))
    message = _("🔑 A one-time invitation with the role {role}, valid until {until}.").format(
        role=role_name(invite.role), until=until
    )
    share = _("Join the team of {program} on Telegram:").format(program=services.program.name)
    return json_of(InviteMadeOut(message=message, link=link, share_text=share, expires=until))


SCREENS = [
    Screen("console/members", load_members, "console_members.html", MembersOut, "Search members (?q=), admins"),
    Screen("console/member", load_member, "console_member.html", MemberPageOut, "One member's file (?ref=), admins"),
    Screen("console/staff", load_staff, "console_staff.html", StaffOut, "Who has which staff role, admins"),
]
ACTIONS = [
    Action("console/adjust", adjust_points, AdjustIn, AdjustedOut, "Adjust a member's points (once per key)"),
    Action("console/birthday", correct_birthday, StaffBirthdayIn, DoneOut, "Correct or clear a member's birthday"),
    Action("console/staff/grant", grant_role, GrantIn, StaffChangedOut, "Give a member a staff role"),
    Action("console/staff/remove", remove_role, RemoveIn, StaffChangedOut, "Take back a role given in the database"),
    Action("console/staff/invite", make_invite, InviteIn, InviteMadeOut, "A one-time staff invitation link (per key)"),
    Action("console/staff/store", assign_store, StoreIn, DoneOut, "The store a staff member works at (audited)"),
]


def setup(app: web.Application, base: str) -> None:
    mount(app, base, SCREENS, ACTIONS)
