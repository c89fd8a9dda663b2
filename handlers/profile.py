"""/profile: birthday, favourite categories and phone number, with a bonus for completing them; and staff's
/setbirthday, since members cannot change a birthday once set."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum

from aiogram import Bot, Router
from aiogram.filters import CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasContent, HasPermission, IsMember, MenuButton, NotCommand, slash
from handlers.menu import PROFILE, main_menu, share_phone_keyboard
from handlers.ui import drop_keyboard, edit_or_keep
from loyalty import profile
from loyalty.members import MemberView, find_member
from loyalty.program import Program
from loyalty.roles import Permission
from notifications.texts import N_, birthday_problem, birthday_text, locale_of
from storage.database import DbSession
from storage.models import Member


class ProfileInput(StatesGroup):
    birthday = State()
    confirm = State()  # a date was understood and shown; ✅ Confirm stores it, ✏️ Change asks again


class BirthdayAnswer(StrEnum):
    CONFIRM = "ok"
    CHANGE = "change"


class BirthdayChoice(CallbackData, prefix="bd"):
    answer: BirthdayAnswer
    # The date as shown ("1990-05-03" or "05-03"): Confirm stores exactly what the member saw, and a tap on an
    # older question (the member typed another date since) is refused instead of storing that one.
    birthday: str


class ProfileStep(StrEnum):
    BIRTHDAY = "birthday"
    FAVOURITES = "favourites"
    PHONE = "phone"
    BACK = "back"


class ProfileAction(CallbackData, prefix="pf"):
    action: ProfileStep


class Favourite(CallbackData, prefix="fav"):
    key: str
    chosen: bool  # the state to set, not a toggle: a replayed tap changes nothing


def _view(member: Member, program: Program) -> tuple[str, InlineKeyboardMarkup]:
    birthday = profile.birthday_of(member)
    names = [c.name_in(member.language) for c in program.profile.categories if c.key in profile.favourites_of(member)]
    missing = "—"
    lines = [
        _("👤 <b>Your profile</b>"),
        "",
        _("🎂 Birthday: {value}").format(
            value=birthday_text(birthday, locale_of(member.language)) if birthday else missing
        ),
        _("❤️ Favourites: {value}").format(value=html.escape(", ".join(names)) if names else missing),
        _("📱 Phone: {value}").format(value=html.escape(member.phone) if member.phone else missing),
        "",
    ]
    if member.profile_completed_at is not None:
        lines.append(_("✅ Your profile is complete. Thank you!"))
    elif program.profile.bonus:
        lines.append(
            ngettext(
                "Complete all three to get {points} bonus point, once.",
                "Complete all three to get {points} bonus points, once.",
                program.profile.bonus,
            ).format(points=program.profile.bonus)
        )
    if birthday is not None:
        lines.append(_("To correct your birthday, please ask our staff."))
    buttons = []
    if birthday is None:
        buttons.append(
            InlineKeyboardButton(
                text=_("🎂 Set birthday"), callback_data=ProfileAction(action=ProfileStep.BIRTHDAY).pack()
            )
        )
    if program.profile.categories:
        buttons.append(
            InlineKeyboardButton(
                text=_("❤️ Favourites"), callback_data=ProfileAction(action=ProfileStep.FAVOURITES).pack()
            )
        )
    buttons.append(
        InlineKeyboardButton(text=_("📱 Phone"), callback_data=ProfileAction(action=ProfileStep.PHONE).pack())
    )
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=[buttons])


async def show_profile(
    message: Message, session: DbSession, member: MemberView, program: Program, state: FSMContext
) -> None:
    await state.clear()
    text, markup = _view(await profile.get_profile(session, member.id), program)
    await message.answer(text, reply_markup=markup)


def _locked() -> str:
    return _("Your birthday is already set. To correct it, please ask our staff.")


def _ask_birthday() -> str:
    return (
        _(
            "When is your birthday? Type it like 1990-07-14, 07-14 (month first), 14 July, 14 July 1990 or "
            "7月14日. You will see it before it is saved: you can set it only once."
        )
        + "\n"
        + _("Send /cancel to stop.")
    )


def _bonus_line(update: profile.Updated) -> str:
    if not update.bonus:
        return ""
    return "\n" + ngettext(
        "🎉 Your profile is complete: +{points} point!", "🎉 Your profile is complete: +{points} points!", update.bonus
    ).format(points=update.bonus)


async def profile_action(
    query: CallbackQuery,
    callback_data: ProfileAction,
    session: DbSession,
    member: MemberView,
    program: Program,
    state: FSMContext,
    bot: Bot,
) -> None:
    await query.answer()
    current = await profile.get_profile(session, member.id)
    if callback_data.action is ProfileStep.BIRTHDAY:
        if profile.birthday_of(current) is not None:
            await bot.send_message(member.chat_id, _locked())
            return
        await state.set_state(ProfileInput.birthday)
        await bot.send_message(member.chat_id, _ask_birthday())
    elif callback_data.action is ProfileStep.FAVOURITES:
        await _show_favourites(query, current, program)
    elif callback_data.action is ProfileStep.PHONE:
        await bot.send_message(
            member.chat_id, _("Tap the button below to share your phone number."), reply_markup=share_phone_keyboard()
        )
    elif callback_data.action is ProfileStep.BACK and isinstance(query.message, Message):
        text, markup = _view(current, program)
        await edit_or_keep(query.message, text, markup)


async def _show_favourites(query: CallbackQuery, member: Member, program: Program) -> None:
    if not isinstance(query.message, Message):
        return
    chosen = set(profile.favourites_of(member))
    rows = [
        [
            InlineKeyboardButton(
                text=("✅ " if c.key in chosen else "▫️ ") + c.name_in(member.language),
                callback_data=Favourite(key=c.key, chosen=c.key not in chosen).pack(),
            )
        ]
        for c in program.profile.categories
    ]
    rows.append([InlineKeyboardButton(text=_("✔️ Done"), callback_data=ProfileAction(action=ProfileStep.BACK).pack())])
    await edit_or_keep(
        query.message,
        _("❤️ What do you like? Tap to choose, tap again to remove."),
        InlineKeyboardMarkup(inline_keyboard=rows),
    )


async def choose_favourite(
    query: CallbackQuery,
    callback_data: Favourite,
    session: DbSession,
    member: MemberView,
    program: Program,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    try:
        update = await profile.set_favourite(
            session, program, member.id, callback_data.key, callback_data.chosen, clock()
        )
    except LookupError:
        await query.answer(_("That choice is not available."), show_alert=True)
        return
    await query.answer()
    await _show_favourites(query, update.member, program)
    if update.bonus:
        await bot.send_message(member.chat_id, _bonus_line(update).strip())


async def receive_birthday(
    message: Message,
    session: DbSession,
    member: MemberView,
    program: Program,
    state: FSMContext,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    """A typed birthday is only shown back with ✅ Confirm / ✏️ Change: nothing is stored until Confirm."""
    try:
        birthday = profile.parse_birthday(message.text or "", clock().astimezone(program.tz).date())
    except profile.BadBirthday as bad:
        await message.answer(birthday_problem(bad, i18n.current_locale) + "\n" + _("Send /cancel to stop."))
        return
    if profile.birthday_of(await profile.get_profile(session, member.id)) is not None:
        await state.clear()
        await message.answer(_locked())
        return
    await state.set_state(ProfileInput.confirm)
    await state.update_data(birthday=str(birthday))
    buttons = [
        InlineKeyboardButton(
            text=_("✅ Confirm"),
            callback_data=BirthdayChoice(answer=BirthdayAnswer.CONFIRM, birthday=str(birthday)).pack(),
        ),
        InlineKeyboardButton(
            text=_("✏️ Change"),
            callback_data=BirthdayChoice(answer=BirthdayAnswer.CHANGE, birthday=str(birthday)).pack(),
        ),
    ]
    await message.answer(
        _("🎂 Your birthday: <b>{birthday}</b>. Is that right? You can set it only once.").format(
            birthday=birthday_text(birthday, i18n.current_locale)
        ),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[buttons]),
    )


async def answer_birthday(
    query: CallbackQuery,
    callback_data: BirthdayChoice,
    session: DbSession,
    member: MemberView,
    program: Program,
    state: FSMContext,
    i18n: I18n,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    try:
        shown = profile.Birthday.from_key(callback_data.birthday)
    except ValueError:
        await query.answer(_("This question has expired. Please open /profile again."), show_alert=True)
        return
    stored = profile.birthday_of(await profile.get_profile(session, member.id))
    message = query.message if isinstance(query.message, Message) else None
    if stored is not None:
        # A second tap on Confirm, or a button left over from before the birthday was set: nothing changes.
        await query.answer(_("Your birthday is saved.") if stored == shown else _locked(), show_alert=stored != shown)
        if message is not None:
            await drop_keyboard(message)
        await state.clear()
        return
    if callback_data.answer is BirthdayAnswer.CHANGE:
        await query.answer()
        await state.set_state(ProfileInput.birthday)
        if message is not None:
            await drop_keyboard(message)
        await bot.send_message(member.chat_id, _ask_birthday())
        return
    if await state.get_state() != ProfileInput.confirm.state or (await state.get_data()).get("birthday") != str(shown):
        # The member typed another date since, cancelled, or the question is from an older visit.
        await query.answer(_("This question has expired. Please open /profile again."), show_alert=True)
        if message is not None:
            await drop_keyboard(message)
        return
    try:
        update = await profile.set_birthday(session, program, member.id, shown, clock())
    except profile.BirthdayLocked:
        await state.clear()
        await query.answer(_locked(), show_alert=True)
        return
    await state.clear()
    await query.answer()
    saved = _("🎂 Birthday saved: {birthday}.").format(birthday=birthday_text(shown, i18n.current_locale))
    if message is not None:
        await edit_or_keep(message, saved + _bonus_line(update), None)
    else:
        await bot.send_message(member.chat_id, saved + _bonus_line(update))


async def receive_contact(
    message: Message,
    session: DbSession,
    member: MemberView,
    program: Program,
    clock: Callable[[], datetime],
) -> None:
    contact = message.contact
    assert contact is not None
    # Only the member's own number counts: the button sends theirs, a forwarded contact card is someone else's.
    if contact.user_id != member.telegram_id or profile.normalize_phone(contact.phone_number) is None:
        await message.answer(_("Please use the button to share your own phone number."), reply_markup=main_menu())
        return
    update = await profile.set_phone(session, program, member.id, contact.phone_number, clock())
    await message.answer(_("📱 Phone number saved.") + _bonus_line(update), reply_markup=main_menu())


async def not_now(message: Message) -> None:
    await message.answer(_("OK, maybe later."), reply_markup=main_menu())


async def set_birthday_by_staff(
    message: Message,
    command: CommandObject,
    session: DbSession,
    program: Program,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    args = (command.args or "").split()
    if len(args) != 2:
        await message.answer(
            _("Usage: {usage}").format(usage=html.escape(_("/setbirthday <member> <YYYY-MM-DD | MM-DD | clear>")))
        )
        return
    target = await find_member(session, args[0])
    if target is None or target.id is None:
        await message.answer(_("No member found for {ref}.").format(ref=html.escape(args[0])))
        return
    now = clock()
    birthday = None
    if args[1].lower() != "clear":
        try:
            birthday = profile.parse_birthday(args[1], now.astimezone(program.tz).date())
        except profile.BadBirthday as bad:
            await message.answer(birthday_problem(bad, i18n.current_locale))
            return
    await profile.set_birthday(session, program, target.id, birthday, now, by_staff=True)
    await message.answer(
        _("Birthday of {name} (<code>{code}</code>) is now {birthday}.").format(
            name=html.escape(target.first_name), code=target.code, birthday=birthday or "—"
        )
    )


def router() -> Router:
    router = Router(name="profile")
    router.message.register(set_birthday_by_staff, slash("setbirthday"), HasPermission(Permission.EDIT_PROFILE))
    members = Router(name="profile-members")
    members.message.filter(IsMember())
    members.callback_query.filter(IsMember())
    members.message.register(show_profile, slash("profile"))
    members.message.register(show_profile, MenuButton(PROFILE))
    members.message.register(receive_contact, HasContent("contact"))
    members.message.register(not_now, MenuButton(N_("Not now")))
    members.callback_query.register(profile_action, ProfileAction.filter())
    members.callback_query.register(choose_favourite, Favourite.filter())
    members.callback_query.register(answer_birthday, BirthdayChoice.filter())
    router.include_router(members)
    return router


def input_router() -> Router:
    """The pending birthday; included after every feature so commands and menu buttons still work."""
    router = Router(name="profile-input")
    router.message.filter(IsMember(), NotCommand())
    router.message.register(receive_birthday, ProfileInput.birthday)
    router.message.register(receive_birthday, ProfileInput.confirm)  # another date replaces the one shown
    return router
