"""The member's screens: home, card, history, rewards and coupons, invite a friend, profile, settings, my data.

Each calls the ``loyalty`` function the chat's command calls, so the app and the chat always agree."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import segno
from aiogram.exceptions import TelegramAPIError
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiohttp import web
from babel.dates import format_skeleton
from pydantic import Field
from sqlalchemy.exc import NoResultFound

from loyalty import privacy, profile, referrals, vip
from loyalty.account import history, summary
from loyalty.ledger import InsufficientPoints
from loyalty.members import LANGUAGES, set_language
from loyalty.program import Program
from loyalty.rewards import RewardUnavailable, catalog, coupons_of, redeem, tier_allows, title_for
from loyalty.tiers import TierProgress
from loyalty.vip import is_vip, vip_until_of
from notifications import vip as vip_telegram
from notifications.ledger import entry_label
from notifications.texts import day, locale_of, money, pending_line, reward_stores
from notifications.vip import stop_renewal
from web.miniapp.checkin import CheckinOut, checkin_of
from web.miniapp.core import (
    LANGUAGE,
    VIEWER,
    Action,
    Model,
    Refused,
    Screen,
    authenticated,
    bad_input,
    json_of,
    mount,
    read,
    require,
)
from web.services import SERVICES

KEY = r"^[A-Za-z0-9_-]{8,64}$"  # what the page generates for each submission


def qr_svg(payload: str) -> str:
    """A QR code as inline SVG: crisp at any size, no image request, nothing to vendor. A viewBox without width and
    height (``omitsize``), so that it fills the box the page gives it rather than staying 25 pixels wide."""
    code = segno.make_qr(payload, error="m")
    return str(code.svg_inline(scale=1, border=2, dark="#000", light="#fff", omitsize=True))


def _member_id(request: web.Request) -> int:
    require(request, member=True)
    member = request[VIEWER].member
    assert member is not None
    return member.id


# ------------------------------------------------------------------------------------------------ home


class TierOut(Model):
    name: str | None
    perks: str | None
    next_name: str | None
    missing: str | None = Field(description="How much more spend (money) or points reaches the next tier")
    progress: float = Field(description="0..1 of the way from this tier to the next")
    by: str | None


class CardOut(Model):
    name: str
    stamps: int
    total: int


class HomeOut(Model):
    first_name: str
    code: str
    points: int
    lifetime_points: int
    expiring_points: int
    expiring_date: str | None
    next_expiring_points: int
    pending_points: int = Field(description="Points of purchases inside the return window: not spendable yet")
    pending: str | None = Field(description="What is pending and when it becomes available, as /balance says it")
    tier: TierOut | None
    cards: list[CardOut]
    vip: bool
    vip_offered: bool = Field(description="VIP can be bought: home links to the VIP screen")
    checkin: CheckinOut | None = Field(default=None, description="The daily check-in; None when the program has none")


async def load_home(request: web.Request) -> HomeOut:
    services = request.app[SERVICES]
    program, locale, language = services.program, locale_of(request[LANGUAGE]), request[LANGUAGE]
    member_id = _member_id(request)
    viewer_member = request[VIEWER].member
    assert viewer_member is not None
    async with services.sessions() as session:
        try:
            overview = await summary(session, program, member_id, viewer_member.tier, services.clock())
        except NoResultFound as gone:
            raise Refused(403, "not_a_member", _("Please join first: send /start to the bot.")) from gone
        vip_now = is_vip(await vip_until_of(session, member_id), services.clock())
    held = overview.balance
    return HomeOut(
        first_name=viewer_member.first_name,
        code=viewer_member.code,
        points=held.points,
        lifetime_points=held.lifetime_points,
        expiring_points=held.expiring_points,
        expiring_date=day(held.expiring_first, program.tz, locale) if held.expiring_first else None,
        next_expiring_points=held.next_points,
        pending_points=held.pending.points,
        pending=pending_line(held.pending, program.tz, locale),
        tier=_tier(overview.tier, program, language, locale) if overview.tier else None,
        cards=[CardOut(name=c.rule.name_in(language), stamps=c.stamps, total=c.rule.stamps) for c in overview.cards],
        vip=vip_now,
        vip_offered=program.vip_offer is not None,
        checkin=await checkin_of(request, member_id),
    )


def _tier(progress: TierProgress, program: Program, language: str, locale: str) -> TierOut:
    current, upcoming = progress.current, progress.next
    missing = None
    if upcoming is not None:
        if program.tiers.basis == "spend":
            missing = money(progress.missing, program.currency, locale)
        else:
            missing = str(int(progress.missing))
    floor = current.enter if current is not None else Decimal(0)
    share = 1.0
    if upcoming is not None and upcoming.enter > floor:
        share = float((upcoming.enter - progress.missing - floor) / (upcoming.enter - floor))
    return TierOut(
        name=current.name_in(language) if current else None,
        perks=current.perks_in(language) if current else None,
        next_name=upcoming.name_in(language) if upcoming else None,
        missing=missing,
        progress=min(max(share, 0.0), 1.0),
        by=day(progress.by, program.tz, locale) if progress.by else None,
    )


# ------------------------------------------------------------------------------------------------ card


class MemberCardOut(Model):
    first_name: str
    code: str
    shop: str
    tier: str | None
    qr_svg: str = Field(description="The member code as a QR code (SVG), for the till to scan")


async def load_card(request: web.Request) -> MemberCardOut:
    services = request.app[SERVICES]
    _member_id(request)
    member = request[VIEWER].member
    assert member is not None
    tier = services.program.tiers.level(member.tier) if member.tier else None
    return MemberCardOut(
        first_name=member.first_name,
        code=member.code,
        shop=services.program.name,
        tier=tier.name_in(request[LANGUAGE]) if tier else None,
        qr_svg=qr_svg(member.code),
    )


# ------------------------------------------------------------------------------------------------ history


class EntryOut(Model):
    date: str
    points: int
    label: str


class HistoryOut(Model):
    entries: list[EntryOut]
    page: int
    pages: int


async def load_history(request: web.Request) -> HistoryOut:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    page = _whole(request.query.get("page", "0"), 10_000)
    locale = locale_of(request[LANGUAGE])
    async with services.sessions() as session:
        found = await history(session, member_id, page)
    return HistoryOut(
        entries=[
            EntryOut(
                date=day(e.created_at, services.program.tz, locale),
                points=e.points,
                label=entry_label(e, services.program, found.promotions.get(e.purchase_id or 0), escape=False),
            )
            for e in found.entries
        ],
        page=found.page,
        pages=found.pages,
    )


def _whole(text: str, most: int) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        raise bad_input()
    return min(int(text), most)


# ------------------------------------------------------------------------------------------------ rewards


class RewardOut(Model):
    id: int
    title: str
    cost: int
    left: int | None
    affordable: bool
    stores: str | None = Field(default=None, description="The stores its coupons are accepted at, when limited")


class CouponOut(Model):
    code: str
    title: str
    expires: str
    qr_svg: str


class RewardsOut(Model):
    points: int
    rewards: list[RewardOut] = Field(description="What the member can afford first, then by cost")
    coupons: list[CouponOut]


async def load_rewards(request: web.Request) -> RewardsOut:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    member = request[VIEWER].member
    assert member is not None
    language, locale = request[LANGUAGE], locale_of(request[LANGUAGE])
    async with services.sessions() as session:
        points = (await summary(session, services.program, member_id, member.tier, services.clock())).balance.points
        rewards = [r for r in await catalog(session) if tier_allows(services.program, r, member.tier)]
        coupons = await coupons_of(session, member_id, services.clock())
    shown = [
        RewardOut(
            id=r.id or 0,
            title=title_for(r, language),
            cost=r.cost,
            left=r.stock,
            affordable=r.cost <= points and r.stock != 0,
            stores=reward_stores(services.program, r.key, language),
        )
        for r in rewards
    ]
    shown.sort(key=lambda r: (not r.affordable, r.cost))
    return RewardsOut(
        points=points,
        rewards=shown,
        coupons=[
            CouponOut(
                code=c.code,
                title=title_for(r, language),
                expires=day(c.expires_at, services.program.tz, locale),
                qr_svg=qr_svg(c.code),
            )
            for c, r in coupons
        ],
    )


class RedeemIn(Model):
    reward_id: int = Field(ge=1, le=2**31)
    key: str = Field(pattern=KEY, description="Generated by the page for this confirmation: a double tap redeems once")


class RedeemOut(Model):
    message: str
    coupon: CouponOut
    balance: int
    replayed: bool


async def redeem_reward(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    body = await read(request, RedeemIn)
    language = request[LANGUAGE]
    async with services.sessions() as session:
        try:
            done = await redeem(
                session,
                member_id=member_id,
                reward_id=body.reward_id,
                key=f"app:{member_id}:{body.key}",
                now=services.clock(),
                program=services.program,
            )
        except InsufficientPoints as short:
            raise Refused(
                409,
                "insufficient_points",
                ngettext(
                    "You have {points} point: not enough for this reward yet.",
                    "You have {points} points: not enough for this reward yet.",
                    short.balance,
                ).format(points=short.balance),
            ) from short
        except RewardUnavailable as gone:
            raise Refused(409, "unavailable", _("That reward is no longer available.")) from gone
    coupon = CouponOut(
        code=done.coupon.code,
        title=title_for(done.reward, language),
        expires=day(done.coupon.expires_at, services.program.tz, locale_of(language)),
        qr_svg=qr_svg(done.coupon.code),
    )
    message = _("🎉 Redeemed! Show this coupon at the till: {code}").format(code=done.coupon.code)
    out = RedeemOut(message=message, coupon=coupon, balance=done.balance, replayed=not done.created)
    return json_of(out, 201 if done.created else 200)


# ------------------------------------------------------------------------------------------------ invite


class InviteOut(Model):
    link: str
    share_text: str
    invited: int
    joined: int
    qualified: int
    points: int


async def load_invite(request: web.Request) -> InviteOut:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    member = request[VIEWER].member
    assert member is not None
    me = await services.bot.me()
    link = f"https://t.me/{me.username}?start={referrals.payload_for(member.code)}"
    async with services.sessions() as session:
        stats = await referrals.stats(session, member_id)
    return InviteOut(
        link=link,
        share_text=_("Join me at {program} and get rewarded for every purchase!").format(program=services.program.name),
        invited=stats.invited,
        joined=stats.joined,
        qualified=stats.qualified,
        points=stats.points,
    )


# ------------------------------------------------------------------------------------------------ profile


class FavouriteOut(Model):
    key: str
    name: str
    chosen: bool


class ProfileOut(Model):
    birthday: str | None
    birthday_locked: bool
    phone: str | None
    favourites: list[FavouriteOut]
    bonus: int
    complete: bool


async def load_profile(request: web.Request) -> ProfileOut:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    language = request[LANGUAGE]
    async with services.sessions() as session:
        member = await profile.get_profile(session, member_id)
    born = profile.birthday_of(member)
    chosen = set(profile.favourites_of(member))
    return ProfileOut(
        birthday=_birthday_text(born, language) if born else None,
        birthday_locked=born is not None,
        phone=member.phone,
        favourites=[
            FavouriteOut(key=c.key, name=c.name_in(language), chosen=c.key in chosen)
            for c in services.program.profile.categories
        ],
        bonus=services.program.profile.bonus,
        complete=member.profile_completed_at is not None,
    )


def _birthday_text(born: profile.Birthday, language: str) -> str:
    locale = {"zh-Hans": "zh_Hans_CN", "zh-Hant": "zh_Hant_TW"}.get(language, "en")
    if born.year:
        return format_skeleton("yMMMd", date(born.year, born.month, born.day), locale=locale)
    return format_skeleton("MMMd", date(2000, born.month, born.day), locale=locale)


class BirthdayIn(Model):
    date: date


class FavouriteIn(Model):
    key: str = Field(min_length=1, max_length=32)
    chosen: bool


class Saved(Model):
    message: str
    bonus: int = 0


async def save_birthday(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    body = await read(request, BirthdayIn)
    now = services.clock()
    today = now.astimezone(services.program.tz).date()
    if body.date > today or body.date.year < today.year - profile.OLDEST_AGE:
        raise Refused(400, "invalid_birthday", _("That date cannot be your birthday. Please check it."))
    born = profile.Birthday(body.date.month, body.date.day, body.date.year)
    async with services.sessions() as session:
        try:
            updated = await profile.set_birthday(session, services.program, member_id, born, now)
        except profile.BirthdayLocked as locked:
            raise Refused(
                409, "birthday_locked", _("Your birthday is already set. To correct it, please ask our staff.")
            ) from locked
    message = _("🎂 Birthday saved: {birthday}.").format(birthday=_birthday_text(born, request[LANGUAGE]))
    return json_of(Saved(message=message, bonus=updated.bonus))


async def save_favourite(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    body = await read(request, FavouriteIn)
    async with services.sessions() as session:
        try:
            updated = await profile.set_favourite(
                session, services.program, member_id, body.key, body.chosen, services.clock()
            )
        except LookupError as unknown:
            raise bad_input() from unknown
    return json_of(Saved(message=_("Saved."), bonus=updated.bonus))


# ------------------------------------------------------------------------------------------------ VIP


class VipOut(Model):
    offered: bool
    title: str | None
    benefits: str | None
    terms: str | None
    price_stars: int | None
    period_days: int | None
    subscription: bool = Field(description='[vip] renew = "subscription": Telegram renews it every 30 days')
    vip_until: str | None = Field(description="The end of VIP, when the member is VIP")
    renews: bool | None = Field(description="None: no subscription running; else whether it renews")
    renews_on: str | None = Field(description="The end of the subscription's period: its next renewal, or its end")


async def load_vip(request: web.Request) -> VipOut:
    """What /vip shows: the offer, VIP's end, and the subscription's state with its buttons."""
    services = request.app[SERVICES]
    program, language, locale = services.program, request[LANGUAGE], locale_of(request[LANGUAGE])
    member_id = _member_id(request)
    now = services.clock()
    async with services.sessions() as session:
        status = await vip.status_of(session, member_id, now)
    rules = program.vip_offer
    subscription = status.subscription
    return VipOut(
        offered=rules is not None,
        title=rules.title_in(language) if rules else None,
        benefits=rules.benefits_in(language) if rules else None,
        terms=rules.terms_in(language) if rules else None,
        price_stars=rules.price_stars if rules else None,
        period_days=rules.period_days if rules else None,
        subscription=rules is not None and rules.renew == "subscription",
        vip_until=day(status.vip_until, program.tz, locale) if status.vip(now) and status.vip_until else None,
        renews=status.renews if subscription else None,
        renews_on=day(subscription.expires_at, program.tz, locale) if subscription else None,
    )


class VipLinkIn(Model):
    pass


class VipLinkOut(Model):
    link: str = Field(description="An invoice link for Telegram.WebApp.openInvoice (a subscription's, if so)")
    message: str = ""


async def vip_link(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    _member_id(request)
    member = request[VIEWER].member
    assert member is not None
    await read(request, VipLinkIn)
    rules = services.program.vip_offer
    if rules is None:
        raise Refused(409, "not_offered", _("VIP membership is not offered at the moment."))
    if rules.renew == "subscription":
        async with services.sessions() as session:
            if (await vip.status_of(session, member.id, services.clock())).subscription is not None:
                raise Refused(409, "subscribed", _("You have a VIP subscription already. Nothing was changed."))
    return json_of(VipLinkOut(link=await vip_telegram.invoice_link(services.bot, rules, member)))


class RenewalIn(Model):
    renew: bool = Field(description="False: cancel the subscription's renewal; true: renew again")


async def vip_renewal(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    _member_id(request)
    member = request[VIEWER].member
    assert member is not None
    body = await read(request, RenewalIn)
    try:
        await vip_telegram.change_renewal(
            services.bot, services.sessions, member, renew=body.renew, now=services.clock()
        )
    except vip.RenewalRefused as refused:
        if refused.problem is vip.RenewalProblem.NO_SUBSCRIPTION:
            text = _("You have no VIP subscription running. Nothing was changed.")
        elif body.renew:
            text = _("Your VIP subscription already renews. Nothing was changed.")
        else:
            text = _("Renewal is already cancelled. Nothing was changed.")
        raise Refused(409, refused.problem.value, text) from refused
    except TelegramAPIError as error:
        raise Refused(
            502,
            "telegram_refused",
            _("Telegram refused the change: {reason}. Nothing was changed.").format(reason=error.message),
        ) from error
    return json_of(Saved(message=_("Renewal is on again.") if body.renew else _("Renewal cancelled.")))


# ------------------------------------------------------------------------------------------------ settings


class LanguageOut(Model):
    code: str
    name: str
    chosen: bool


class SettingsOut(Model):
    languages: list[LanguageOut]
    promotions: bool


LANGUAGE_NAMES = {"en": "English", "zh-Hans": "简体中文", "zh-Hant": "繁體中文"}


async def load_settings(request: web.Request) -> SettingsOut:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    async with services.sessions() as session:
        promotions = await privacy.promotions_on(session, member_id)
    return SettingsOut(
        languages=[
            LanguageOut(code=code, name=LANGUAGE_NAMES.get(code, code), chosen=code == request[LANGUAGE])
            for code in LANGUAGES
        ],
        promotions=promotions,
    )


class SettingsIn(Model):
    language: str | None = Field(default=None, max_length=16)
    promotions: bool | None = None


async def save_settings(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    body = await read(request, SettingsIn)
    if body.language is not None and body.language not in LANGUAGES:
        raise bad_input()
    async with services.sessions() as session:
        if body.language is not None:
            await set_language(session, member_id, body.language)
        if body.promotions is not None:
            await privacy.set_promotions(session, member_id, body.promotions)
    if body.language is not None:
        with services.i18n.use_locale(locale_of(body.language)):
            return json_of(Saved(message=_("Saved.")))
    return json_of(Saved(message=_("Saved.")))


# ------------------------------------------------------------------------------------------------ my data


async def export_data(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    async with services.sessions() as session:
        data = await privacy.export(session, member_id)
    return web.json_response(
        data,
        headers={"Content-Disposition": 'attachment; filename="my-data.json"', "Cache-Control": "no-store"},
        dumps=lambda value: json.dumps(value, ensure_ascii=False, indent=2),
    )


class DeleteIn(Model):
    confirm: bool


async def delete_data(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    member_id = _member_id(request)
    body = await read(request, DeleteIn)
    if not body.confirm:
        raise Refused(400, "not_confirmed", _("Nothing was deleted."))
    now = services.clock()
    async with services.sessions() as session:
        await privacy.erase(session, member_id, now)
        # Nothing is charged after they left: a renewing VIP subscription is cancelled with Telegram.
        await stop_renewal(services.bot, session, member_id, request[VIEWER].telegram_id, now)
    return json_of(Saved(message=_("Your data has been deleted. Send /start to join again.")))


class DataOut(Model):
    code: str


async def load_data(request: web.Request) -> DataOut:
    _member_id(request)
    member = request[VIEWER].member
    assert member is not None
    return DataOut(code=member.code)


SCREENS = [
    Screen("home", load_home, "home.html", HomeOut, "Points, tier progress, expiring points, punch cards, VIP"),
    Screen("card", load_card, "card.html", MemberCardOut, "The member card: code and its QR"),
    Screen("history", load_history, "history.html", HistoryOut, "One page of the points history (?page=N)"),
    Screen("rewards", load_rewards, "rewards.html", RewardsOut, "Rewards (affordable first) and coupons"),
    Screen("invite", load_invite, "invite.html", InviteOut, "The referral link and its results"),
    Screen("profile", load_profile, "profile.html", ProfileOut, "Birthday, favourites, phone"),
    Screen("settings", load_settings, "settings.html", SettingsOut, "Language and promotions"),
    Screen("vip", load_vip, "vip.html", VipOut, "VIP: the offer, its end, and the subscription's renewal"),
    Screen("data", load_data, "data.html", DataOut, "Export or delete my data"),
]
ACTIONS = [
    Action("rewards/redeem", redeem_reward, RedeemIn, RedeemOut, "Redeem a reward (once per key)"),
    Action("profile/birthday", save_birthday, BirthdayIn, Saved, "Set the birthday (once)"),
    Action("profile/favourite", save_favourite, FavouriteIn, Saved, "Choose or drop a favourite category"),
    Action("settings", save_settings, SettingsIn, Saved, "Change language or promotions"),
    Action("vip/link", vip_link, VipLinkIn, VipLinkOut, "An invoice link to buy VIP (a subscription's, if so)"),
    Action("vip/renewal", vip_renewal, RenewalIn, Saved, "Cancel a VIP subscription's renewal, or renew again"),
    Action("data/delete", delete_data, DeleteIn, Saved, "Erase my personal data"),
]


def setup(app: web.Application, base: str) -> None:
    mount(app, base, SCREENS, ACTIONS)
    app.router.add_get(f"{base}api/data/export", authenticated(export_data))
