"""Rewards: members browse and redeem (/rewards, /coupons); cashiers take coupons (/redeem); admins keep the
catalog (/reward add|list|disable)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from aiogram import F, Router
from aiogram.filters import CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.card import qr_png
from handlers.filters import HasPermission, IsMember, MenuButton, slash
from handlers.menu import REWARDS
from handlers.ui import app_markup, app_rows, drop_keyboard, edit_or_keep
from loyalty import stores
from loyalty.ledger import InsufficientPoints
from loyalty.members import MemberView
from loyalty.numbers import RowId
from loyalty.program import DEFAULT_VALIDITY_DAYS, MAX_REWARD_COST, MAX_VALIDITY_DAYS, Program
from loyalty.rewards import (
    MAX_TITLE,
    TITLE_COLUMNS,
    CouponProblem,
    RewardUnavailable,
    Unavailable,
    add_reward,
    catalog,
    coupons_of,
    find_reward,
    normalize_coupon_code,
    redeem,
    set_active,
    set_title,
    tier_allows,
    title_for,
    use_coupon,
)
from loyalty.roles import Permission
from notifications.refusals import wrong_store_refused
from notifications.texts import day, reward_stores, when
from storage.database import DbSession
from storage.models import Reward


class RewardStep(StrEnum):
    PICK = "pick"
    CONFIRM = "confirm"
    CANCEL = "cancel"


class RewardCallback(CallbackData, prefix="rw"):
    action: RewardStep
    reward_id: RowId


def _line(reward: Reward, program: Program, language: str) -> str:
    text = ngettext("🎁 <b>{title}</b> — {cost} point", "🎁 <b>{title}</b> — {cost} points", reward.cost).format(
        title=html.escape(title_for(reward, language)), cost=reward.cost
    )
    if reward.stock is not None:
        text += " · " + _("{count} left").format(count=reward.stock)
    if where := reward_stores(program, reward.key, language):
        text += " · " + _("only at {stores}").format(stores=html.escape(where))
    return text


async def list_rewards(
    message: Message, session: DbSession, member: MemberView, program: Program, webapp_url: str | None = None
) -> None:
    rewards = [r for r in await catalog(session) if tier_allows(program, r, member.tier)]
    if not rewards:
        await message.answer(_("There are no rewards yet. Check back soon!"), reply_markup=app_markup(webapp_url))
        return
    lines = [
        ngettext("You have <b>{points}</b> point.", "You have <b>{points}</b> points.", member.points).format(
            points=member.points
        ),
        "",
    ]
    lines += [_line(reward, program, member.language) for reward in rewards]
    affordable = [r for r in rewards if r.cost <= member.points and r.stock != 0 and r.id is not None]
    buttons = [
        [
            InlineKeyboardButton(
                text=_("Redeem: {title}").format(title=title_for(reward, member.language))[:64],
                callback_data=RewardCallback(action=RewardStep.PICK, reward_id=reward.id or 0).pack(),
            )
        ]
        for reward in affordable
    ] + app_rows(webapp_url, "rewards")
    if not affordable:
        lines += ["", _("Keep collecting points to unlock a reward.")]
    await message.answer(
        "\n".join(lines), reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons) if buttons else None
    )


async def pick_reward(
    query: CallbackQuery, callback_data: RewardCallback, session: DbSession, member: MemberView
) -> None:
    reward = await find_reward(session, str(callback_data.reward_id))
    if reward is None or not reward.active:
        await query.answer(_("That reward is no longer available."), show_alert=True)
        return
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("✅ Confirm"),
                    callback_data=RewardCallback(action=RewardStep.CONFIRM, reward_id=callback_data.reward_id).pack(),
                ),
                InlineKeyboardButton(
                    text=_("Cancel"),
                    callback_data=RewardCallback(action=RewardStep.CANCEL, reward_id=callback_data.reward_id).pack(),
                ),
            ]
        ]
    )
    await query.answer()
    if not isinstance(query.message, Message):
        return
    await query.message.answer(
        ngettext(
            "Redeem <b>{title}</b> for {cost} point? You have {points}.",
            "Redeem <b>{title}</b> for {cost} points? You have {points}.",
            reward.cost,
        ).format(title=html.escape(title_for(reward, member.language)), cost=reward.cost, points=member.points),
        reply_markup=markup,
    )


async def confirm_reward(
    query: CallbackQuery,
    callback_data: RewardCallback,
    session: DbSession,
    member: MemberView,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    if not isinstance(query.message, Message):
        await query.answer(_("This confirmation has expired. Open /rewards again."), show_alert=True)
        return
    # The confirmation message is the key: a double tap, a replayed callback or two taps racing spend once.
    key = f"redeem:{query.message.chat.id}:{query.message.message_id}"
    try:
        result = await redeem(
            session, member_id=member.id, reward_id=callback_data.reward_id, key=key, now=clock(), program=program
        )
    except InsufficientPoints as short:
        await query.answer(
            ngettext(
                "You need {cost} point; you have {points}.", "You need {cost} points; you have {points}.", short.needed
            ).format(cost=short.needed, points=short.balance),
            show_alert=True,
        )
        return
    except RewardUnavailable as refused:
        await query.answer(_unavailable(refused.reason), show_alert=True)
        return
    await query.answer()
    title = html.escape(title_for(result.reward, member.language))
    await edit_or_keep(query.message, _("✅ Redeemed <b>{title}</b>.").format(title=title), None)
    if not result.created:
        return
    coupon = result.coupon
    caption = "\n".join(
        [
            _("🎟 Your coupon for <b>{title}</b>").format(title=title),
            _("Code: <code>{code}</code>").format(code=coupon.code),
            _("Valid until {date}. Show it at the till.").format(
                date=day(coupon.expires_at, program.tz, i18n.current_locale)
            ),
            _("Points left: {points}").format(points=result.balance),
        ]
    )
    await query.message.answer_photo(
        BufferedInputFile(qr_png(coupon.code), filename=f"coupon-{coupon.code}.png"), caption=caption
    )


async def cancel_reward(query: CallbackQuery) -> None:
    await query.answer(_("Cancelled."))
    if isinstance(query.message, Message):
        await drop_keyboard(query.message)


def _unavailable(reason: Unavailable) -> str:
    if reason is Unavailable.OUT_OF_STOCK:
        return _("Sorry, that reward is out of stock.")
    if reason is Unavailable.TIER_TOO_LOW:
        return _("That reward is for members of a higher tier.")
    if reason is Unavailable.LIMIT_REACHED:
        return _("You have already redeemed this reward as many times as allowed.")
    return _("That reward is no longer available.")


async def list_coupons(
    message: Message,
    session: DbSession,
    member: MemberView,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    coupons = await coupons_of(session, member.id, clock())
    if not coupons:
        await message.answer(_("You have no coupons. Redeem points for one with /rewards."))
        return
    lines = [_("🎟 <b>Your coupons</b>"), ""]
    lines += [
        _("<code>{code}</code> · {title} · valid until {date}").format(
            code=coupon.code,
            title=html.escape(title_for(reward, member.language)),
            date=day(coupon.expires_at, program.tz, i18n.current_locale),
        )
        for coupon, reward in coupons
    ]
    await message.answer("\n".join(lines))


async def redeem_coupon(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    typed = (command.args or "").strip()
    if not typed:
        await message.answer(_("Usage: {usage}").format(usage=html.escape(_("/redeem <coupon code>"))))
        return
    code = normalize_coupon_code(typed)
    if code is None:  # not even the shape of one: no such coupon, whatever was meant
        await message.answer(_("No coupon {code}. Please check the code.").format(code=html.escape(typed[:40])))
        return
    cashier = message.from_user.id if message.from_user else 0
    store = await stores.of_staff(session, program, cashier)
    result = await use_coupon(session, code, cashier_id=cashier, now=clock(), program=program, store=store)
    coupon, reward, locale = result.coupon, result.reward, i18n.current_locale
    if result.problem is CouponProblem.UNKNOWN or coupon is None or reward is None:
        await message.answer(_("No coupon {code}. Please check the code.").format(code=code))
    elif result.problem is CouponProblem.USED:
        used = when(coupon.used_at, program.tz, locale) if coupon.used_at else "?"
        await message.answer(_("Coupon {code} was already used on {when}.").format(code=code, when=used))
    elif result.problem is CouponProblem.EXPIRED:
        await message.answer(
            _("Coupon {code} expired on {date}.").format(code=code, date=day(coupon.expires_at, program.tz, locale))
        )
    elif result.problem is CouponProblem.DISABLED:
        await message.answer(_("Coupon {code} is for a reward that has been withdrawn.").format(code=code))
    elif result.problem is CouponProblem.WRONG_STORE:
        await message.answer(wrong_store_refused(program, reward.key, locale.replace("_", "-")))
    else:
        owner = result.owner
        await message.answer(
            _("✅ Coupon {code} accepted: <b>{title}</b>, {name}'s (<code>{member}</code>).").format(
                code=code,
                title=html.escape(reward.title),
                name=html.escape(owner.first_name) if owner else "?",
                member=owner.code if owner else "?",
            )
        )


_OPTION = re.compile(r"^(stock|limit|days)=([0-9]{1,7})$")


def _reward_usage() -> str:
    return _("Usage: {usage}").format(
        usage=html.escape(
            _(
                "/reward add <cost> [stock=N] [limit=N] [days=N] [tier=NAME] <title> | /reward list | "
                "/reward disable <id> | /reward title <id> <en|zh-Hans|zh-Hant> <title>"
            )
        )
    )


async def manage_rewards(message: Message, command: CommandObject, session: DbSession, program: Program) -> None:
    action, _sep, rest = (command.args or "").strip().partition(" ")
    if action == "list":
        rewards = await catalog(session, include_disabled=True)
        lines = [
            f"#{r.id} · {html.escape(r.title)} · {r.cost} · " + (_("active") if r.active else _("disabled"))
            for r in rewards
        ]
        await message.answer("\n".join(lines) or _("There are no rewards yet. Check back soon!"))
    elif action == "add":
        await _add(message, session, program, rest.split())
    elif action == "title":
        await _title(message, session, rest.split(maxsplit=2))
    elif action in ("disable", "enable") and rest.strip():
        reward = await find_reward(session, rest.strip())
        if reward is None or reward.id is None:
            await message.answer(_("No reward {ref}.").format(ref=html.escape(rest.strip()[:32])))
            return
        await set_active(session, reward.id, action == "enable")
        await message.answer(
            _("Reward #{id} {title} is now {state}.").format(
                id=reward.id,
                title=html.escape(reward.title),
                state=_("active") if action == "enable" else _("disabled"),
            )
        )
    else:
        await message.answer(_reward_usage())


async def _title(message: Message, session: DbSession, words: list[str]) -> None:
    """/reward title <id or key> <en|zh-Hans|zh-Hant> <title>: a chat-made reward's title for members reading
    another language."""
    if len(words) < 3 or words[1].lower() not in TITLE_COLUMNS or not words[2].strip():
        await message.answer(_reward_usage())
        return
    reward = await find_reward(session, words[0])
    if reward is None or reward.id is None:
        await message.answer(_("No reward {ref}.").format(ref=html.escape(words[0][:32])))
        return
    if reward.from_file:
        await message.answer(
            _("Reward #{id} comes from the program file: set its titles there (title_zh_hans, title_zh_hant).").format(
                id=reward.id
            )
        )
        return
    await set_title(session, reward, words[1], words[2].strip())
    await message.answer(
        _("Reward #{id} is now called {title} in {language}.").format(
            id=reward.id, title=html.escape(words[2].strip()[:MAX_TITLE]), language=words[1]
        )
    )


async def _add(message: Message, session: DbSession, program: Program, words: list[str]) -> None:
    if not words or not (words[0].isascii() and words[0].isdecimal()) or not 0 < int(words[0]) <= MAX_REWARD_COST:
        await message.answer(_("The cost must be a whole number of points above zero.") + "\n" + _reward_usage())
        return
    options: dict[str, int] = {}
    rest = words[1:]
    tier = None
    tiers = {level.name.lower(): level.name for level in program.tiers.levels}
    for word in list(rest):
        if word.lower().startswith("tier="):
            tier = tiers.get(word.split("=", 1)[1].lower())
            if tier is None:
                await message.answer(
                    _("Unknown tier. Tiers: {tiers}.").format(tiers=html.escape(", ".join(tiers.values()) or "—"))
                )
                return
            rest.remove(word)
    while rest and (match := _OPTION.match(rest[0])):
        options[match.group(1)] = int(match.group(2))
        rest = rest[1:]
    title = " ".join(rest)[:64]
    days = options.get("days", DEFAULT_VALIDITY_DAYS)
    if not title or not 0 < days <= MAX_VALIDITY_DAYS or options.get("limit") == 0:
        await message.answer(_reward_usage())
        return
    reward = await add_reward(
        session,
        title=title,
        cost=int(words[0]),
        stock=options.get("stock"),
        per_member_limit=options.get("limit"),
        validity_days=days,
        min_tier=tier,
    )
    await message.answer(
        ngettext(
            "✅ Added reward #{id}: {title} for {cost} point.",
            "✅ Added reward #{id}: {title} for {cost} points.",
            reward.cost,
        ).format(id=reward.id, title=html.escape(reward.title), cost=reward.cost)
    )


def router() -> Router:
    router = Router(name="rewards")
    router.message.register(redeem_coupon, slash("redeem"), HasPermission(Permission.REDEEM_COUPON))
    router.message.register(manage_rewards, slash("reward"), HasPermission(Permission.MANAGE_REWARDS))
    router.message.register(list_rewards, slash("rewards"), IsMember())
    router.message.register(list_rewards, MenuButton(REWARDS), IsMember())
    router.message.register(list_coupons, slash("coupons"), IsMember())
    router.callback_query.register(pick_reward, RewardCallback.filter(F.action == RewardStep.PICK), IsMember())
    router.callback_query.register(confirm_reward, RewardCallback.filter(F.action == RewardStep.CONFIRM), IsMember())
    router.callback_query.register(cancel_reward, RewardCallback.filter(F.action == RewardStep.CANCEL), IsMember())
    return router
