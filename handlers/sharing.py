"""/share: members send a link to a post, a review or a photo; staff approve or reject it in the support chat."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import IsMember, MenuButton, NotCommand, slash
from handlers.menu import SHARE
from handlers.staff import StaffChats, ask_staff, close_review, refuse_non_moderator
from loyalty import sharing
from loyalty.members import MemberView
from loyalty.numbers import RowId
from loyalty.program import Program
from loyalty.roles import Role
from notifications.texts import N_, tell
from storage.database import DbSession
from storage.models import Submission

KIND_NAMES = {"link": N_("🔗 A link to your post"), "review": N_("✍️ A review"), "photo": N_("📷 A photo")}
REASON_NAMES = {
    "not_public": N_("Not public"),
    "not_ours": N_("Not about us"),
    "duplicate": N_("Duplicate"),
    "quality": N_("Low quality"),
    "other": N_("Other"),
}
REFUSALS = {
    sharing.Refusal.NOT_OFFERED: N_("That kind of content does not earn points here."),
    sharing.Refusal.DAILY_CAP: N_("You have shared as much of this kind as you can today. Try again tomorrow!"),
    sharing.Refusal.MONTHLY_CAP: N_("You have shared as much of this kind as you can this month."),
    sharing.Refusal.DUPLICATE: N_("That link was shared before, so it cannot earn points again."),
    sharing.Refusal.BAD_LINK: N_("Please send a public web link, like https://example.com/post/123."),
}


class ShareInput(StatesGroup):
    content = State()


class ShareKind(CallbackData, prefix="sk"):
    kind: str


class ShareReview(CallbackData, prefix="sr"):
    submission_id: RowId
    reason: str  # "ok" to approve, else a rejection reason


def _refusal(refusal: sharing.Refusal) -> str:
    # The two length refusals name a count, so they take the plural form that count needs.
    if refusal is sharing.Refusal.TOO_SHORT:
        return ngettext(
            "Please write a little more: a review needs at least {min} character.",
            "Please write a little more: a review needs at least {min} characters.",
            sharing.REVIEW_MIN,
        ).format(min=sharing.REVIEW_MIN)
    if refusal is sharing.Refusal.TOO_LONG:
        return ngettext(
            "That review is too long: please keep it under {max} character.",
            "That review is too long: please keep it under {max} characters.",
            sharing.REVIEW_MAX,
        ).format(max=sharing.REVIEW_MAX)
    return _(REFUSALS[refusal])


async def share(message: Message, program: Program, state: FSMContext) -> None:
    kinds = program.sharing.kinds
    if not kinds:
        await message.answer(_("Sharing does not earn points at the moment."))
        return
    await state.clear()
    lines = [_("📣 <b>Share and earn</b>"), _("Tell others about us and get points once our staff check it:"), ""]
    lines += [
        ngettext("{kind}: {points} point", "{kind}: {points} points", program.sharing.kind(kind).points).format(
            kind=_(KIND_NAMES[kind]), points=program.sharing.kind(kind).points
        )
        for kind in kinds
    ]
    buttons = [
        [InlineKeyboardButton(text=_(KIND_NAMES[kind]), callback_data=ShareKind(kind=kind).pack())] for kind in kinds
    ]
    await message.answer("\n".join(lines), reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons))


async def choose_kind(
    query: CallbackQuery,
    callback_data: ShareKind,
    session: DbSession,
    member: MemberView,
    program: Program,
    state: FSMContext,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    try:
        await sharing.can_submit(session, program, member.id, callback_data.kind, clock())
    except sharing.Refused as refused:
        await query.answer(_refusal(refused.refusal), show_alert=True)
        return
    await state.set_state(ShareInput.content)
    await state.update_data(kind=callback_data.kind)
    await query.answer()
    prompts = {
        "link": _("Send me the link to your public post about us."),
        "review": ngettext(
            "Write your review in one message (at least {min} character).",
            "Write your review in one message (at least {min} characters).",
            sharing.REVIEW_MIN,
        ).format(min=sharing.REVIEW_MIN),
        "photo": _("Send me your photo."),
    }
    await bot.send_message(member.chat_id, prompts[callback_data.kind] + "\n" + _("Send /cancel to stop."))


async def receive_content(
    message: Message,
    session: DbSession,
    member: MemberView,
    program: Program,
    state: FSMContext,
    bot: Bot,
    i18n: I18n,
    staff_chats: StaffChats,
    clock: Callable[[], datetime],
) -> None:
    kind = (await state.get_data()).get("kind", "")
    if kind == "photo":
        if not message.photo:
            await message.answer(_("Please send a photo, or /cancel."))
            return
        content = message.photo[-1].file_id
    elif not message.text:
        await message.answer(_("Please send it as text, or /cancel."))
        return
    else:
        content = message.text
    try:
        submission = await sharing.submit(session, program, member.id, kind, content, clock())
    except sharing.Refused as refused:
        await message.answer(_refusal(refused.refusal))
        if refused.refusal in (
            sharing.Refusal.DAILY_CAP,
            sharing.Refusal.MONTHLY_CAP,
            sharing.Refusal.DUPLICATE,
            sharing.Refusal.NOT_OFFERED,
        ):
            await state.clear()
        return
    await state.clear()
    await message.answer(_("Thank you! Our staff will check it soon, and you will hear from me."))
    await ask_staff(
        bot,
        staff_chats,
        i18n,
        program,
        lambda: _review_request(submission, member, program),
        lambda: _review_buttons(submission),
        photo=submission.content if kind == "photo" else None,
    )


def _review_request(submission: Submission, member: MemberView, program: Program) -> str:
    points = program.sharing.kind(submission.kind).points
    head = ngettext(
        "📣 {kind} from {name} (<code>{code}</code>) for {points} point:",
        "📣 {kind} from {name} (<code>{code}</code>) for {points} points:",
        points,
    ).format(kind=_(KIND_NAMES[submission.kind]), name=html.escape(member.first_name), code=member.code, points=points)
    if submission.kind == "photo":
        return head
    return f"{head}\n\n{html.escape(submission.content)}"


def _review_buttons(submission: Submission) -> InlineKeyboardMarkup:
    sid = submission.id or 0
    rejects = [
        InlineKeyboardButton(
            text="❌ " + _(REASON_NAMES[reason]), callback_data=ShareReview(submission_id=sid, reason=reason).pack()
        )
        for reason in sharing.REASONS
    ]
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=_("✅ Approve"), callback_data=ShareReview(submission_id=sid, reason="ok").pack()
                )
            ],
            rejects[:2],
            rejects[2:4],
            rejects[4:],
        ]
    )


async def review_submission(
    query: CallbackQuery,
    callback_data: ShareReview,
    session: DbSession,
    program: Program,
    role: Role,
    i18n: I18n,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    if await refuse_non_moderator(query, role):
        return
    approve = callback_data.reason == "ok"
    if not approve and callback_data.reason not in sharing.REASONS:
        await query.answer(_("That choice is not available."), show_alert=True)
        return
    decision = await sharing.decide(
        session,
        program,
        callback_data.submission_id,
        approve=approve,
        reason=None if approve else callback_data.reason,
        actor_id=query.from_user.id,
        now=clock(),
    )
    if decision is None:
        await query.answer(_("This submission no longer exists."), show_alert=True)
        return
    label = _decision(decision.submission)
    if not decision.changed:
        await query.answer(_("Already decided: {decision}.").format(decision=label()), show_alert=True)
        return
    await query.answer(label())
    await close_review(query, i18n, program, label)
    submission, points = decision.submission, decision.points
    if approve:
        await tell(
            bot,
            i18n,
            decision.member,
            lambda: ngettext(
                "✅ Thank you for sharing! Our staff approved your {kind}: +{points} point.",
                "✅ Thank you for sharing! Our staff approved your {kind}: +{points} points.",
                points,
            ).format(kind=_(KIND_NAMES[submission.kind]), points=points),
        )
    else:
        await tell(
            bot,
            i18n,
            decision.member,
            lambda: _("Sorry, your {kind} was not approved: {reason}.").format(
                kind=_(KIND_NAMES[submission.kind]), reason=_reason_name(submission.reason).lower()
            ),
        )


def _decision(submission: Submission) -> Callable[[], str]:
    if submission.status == sharing.Status.APPROVED:
        return lambda: _("✅ Approved")
    return lambda: _("❌ Rejected: {reason}").format(reason=_reason_name(submission.reason))


def _reason_name(reason: str | None) -> str:
    msgid = REASON_NAMES.get(reason or "", REASON_NAMES["other"])
    return _(msgid)


def router() -> Router:
    router = Router(name="sharing")
    router.message.filter(IsMember())
    router.callback_query.filter(IsMember())
    router.message.register(share, slash("share"))
    router.message.register(share, MenuButton(SHARE))
    router.callback_query.register(choose_kind, ShareKind.filter())
    return router


def input_router() -> Router:
    """The pending answer to /share; included after every feature so commands and menu buttons still work."""
    router = Router(name="sharing-input")
    router.message.filter(IsMember(), NotCommand())
    router.message.register(receive_content, ShareInput.content)
    return router


def review_router() -> Router:
    router = Router(name="sharing-review")
    router.callback_query.register(review_submission, ShareReview.filter())
    return router
