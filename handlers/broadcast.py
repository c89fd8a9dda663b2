"""/broadcast: admins compose a promotion (with language variants), pick a segment, preview it, and send it now
or at a time; /broadcasts shows progress with pause / resume / cancel; members stop promotions in one tap."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from aiogram import Bot, Router
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import get_i18n, ngettext
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission, IsMember, NotCommand, slash
from handlers.language import NAMES
from handlers.menu import refuse_button
from handlers.ui import drop_keyboard
from loyalty import broadcasts, holdouts, privacy
from loyalty.members import MemberView
from loyalty.numbers import RowId
from loyalty.program import Program
from loyalty.roles import Permission
from loyalty.segments import BadSegment, Segment, parse_segment
from notifications.broadcasting import (
    Broadcaster,
    ResendUnknown,
    StopPromotions,
    markup_for,
    progress_text,
    send_variant,
    status_name,
)
from notifications.texts import content_problem, holdout_note, holdout_problem, segment_problem, time_passed, when
from storage.database import DbSession

BUTTON_RE = re.compile(r"^\s*button:\s*(?P<text>[^|]{1,40}?)\s*\|\s*(?P<url>https?://\S+)\s*$", re.IGNORECASE)


class Compose(StatesGroup):
    message = State()
    variant = State()
    segment = State()
    confirm = State()
    time = State()


class ComposeStep(StrEnum):
    VARIANT = "variant"
    SEGMENT = "segment"
    ALL = "all"
    SEND = "send"
    SCHEDULE = "schedule"
    CANCEL = "cancel"


class ComposeAction(CallbackData, prefix="bc"):
    action: ComposeStep
    language: str = ""


class BroadcastControl(CallbackData, prefix="bcc"):
    broadcast_id: RowId
    to: broadcasts.Status  # paused, running or cancelled


def _message_of(message: Message) -> dict[str, Any] | str | None:
    """The broadcast as members will get it: formatting kept, an optional last line "button: Title | URL". A
    string says what is wrong with it; None, that it is neither text nor a photo."""
    if message.photo:
        body = message.html_text if message.caption else ""
    elif message.text:
        body = message.html_text
    else:
        return None
    lines = body.split("\n")
    button = None
    if lines and (found := BUTTON_RE.match(html.unescape(lines[-1]))):
        button = {"text": found["text"], "url": found["url"]}
        body = "\n".join(lines[:-1])
    try:
        return broadcasts.variant_of(body, photo=message.photo[-1].file_id if message.photo else None, button=button)
    except broadcasts.BadContent as bad:
        return content_problem(bad, escape=True)


async def start(message: Message, state: FSMContext) -> None:
    await state.clear()
    await state.set_state(Compose.message)
    await message.answer(
        "\n".join(
            [
                _("📣 <b>New broadcast</b>. Send the message: text (formatting is kept) or a photo with a caption."),
                _("To add a link button, end it with a line like: {example}").format(
                    example="<code>button: Order now | https://example.com</code>"
                ),
                _("Send /cancel to stop at any step."),
            ]
        )
    )


def _after_message_keyboard(content: dict[str, Any]) -> InlineKeyboardMarkup:
    rows = [
        [
            InlineKeyboardButton(
                text=_("➕ Version in {language}").format(language=NAMES[code]),
                callback_data=ComposeAction(action=ComposeStep.VARIANT, language=code).pack(),
            )
        ]
        for code in NAMES
        if code not in content and code != "en"
    ]
    rows.append(
        [
            InlineKeyboardButton(
                text=_("Next: choose members ▶"), callback_data=ComposeAction(action=ComposeStep.SEGMENT).pack()
            )
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def got_message(message: Message, state: FSMContext) -> None:
    content = _message_of(message)
    if content is None:
        await message.answer(_("Please send text, or a photo with an optional caption."))
        return
    if isinstance(content, str):
        await message.answer(content)
        return
    data = await state.get_data()
    language = data.get("variant_language")
    stored: dict[str, Any] = data.get("content", {})
    stored[language or "default"] = content
    await state.update_data(content=stored, variant_language=None)
    await state.set_state(Compose.variant)
    done = _("Version for {language} saved.").format(language=NAMES[language]) if language else _("Message saved.")
    await message.answer(
        done + "\n" + _("Members get the version in their language, else the first one."),
        reply_markup=_after_message_keyboard(stored),
    )


async def compose_action(
    query: CallbackQuery,
    callback_data: ComposeAction,
    session: DbSession,
    state: FSMContext,
    program: Program,
    bot: Bot,
    broadcaster: Broadcaster,
    clock: Callable[[], datetime],
) -> None:
    data = await state.get_data()
    if "content" not in data:
        await query.answer(_("This draft is gone. Start again with /broadcast."), show_alert=True)
        return
    await query.answer()
    chat_id = query.from_user.id
    if callback_data.action is ComposeStep.VARIANT and callback_data.language in NAMES:
        await state.update_data(variant_language=callback_data.language)
        await state.set_state(Compose.message)
        await bot.send_message(
            chat_id, _("Send the version in {language}.").format(language=NAMES[callback_data.language])
        )
    elif callback_data.action is ComposeStep.SEGMENT:
        await state.set_state(Compose.segment)
        await bot.send_message(
            chat_id,
            "\n".join(
                [
                    _("Who should get it? Send filters, combined with AND, or tap All members:"),
                    "<code>tier=Gold</code> · <code>inactive=30</code> · <code>active=7</code> · "
                    "<code>birthday</code> · <code>lang=zh-Hans</code> · <code>nps=promoter</code> · "
                    "<code>points=100</code>",
                    _("Members who turned promotions off, blocked the bot or erased their data never get it."),
                    _(
                        "To measure the effect, add {example}: a random 10% of them get nothing, and /stats compares "
                        "the two groups."
                    ).format(example="<code>holdout=10%</code>"),
                ]
            ),
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[
                    [
                        InlineKeyboardButton(
                            text=_("All members"), callback_data=ComposeAction(action=ComposeStep.ALL).pack()
                        )
                    ]
                ]
            ),
        )
    elif callback_data.action is ComposeStep.ALL:
        await _preview(bot, chat_id, session, state, program, Segment(), clock())
    elif callback_data.action is ComposeStep.SEND:
        await _create(bot, chat_id, session, state, program, broadcaster, clock(), None)
    elif callback_data.action is ComposeStep.SCHEDULE:
        await state.set_state(Compose.time)
        await bot.send_message(
            chat_id, _("When? Send the local time as YYYY-MM-DD HH:MM ({zone}).").format(zone=program.timezone)
        )
    elif callback_data.action is ComposeStep.CANCEL:
        await state.clear()
        await bot.send_message(chat_id, _("Broadcast cancelled; nothing was sent."))


async def got_segment(
    message: Message, session: DbSession, state: FSMContext, program: Program, bot: Bot, clock: Callable[[], datetime]
) -> None:
    try:
        filters, share = holdouts.take_share(message.text or "")
        segment = parse_segment(filters, program)
    except holdouts.BadHoldout as bad:
        await message.answer(holdout_problem(bad.word, escape=True))
        return
    except BadSegment as bad:
        await message.answer(segment_problem(bad, escape=True))
        return
    await _preview(bot, message.chat.id, session, state, program, segment, clock(), share)


async def _preview(
    bot: Bot,
    chat_id: int,
    session: DbSession,
    state: FSMContext,
    program: Program,
    segment: Segment,
    now: datetime,
    holdout: float = 0,
) -> None:
    data = await state.get_data()
    counts = await broadcasts.audience(session, segment, program, now)
    await state.update_data(segment=segment.model_dump(), holdout=holdout)
    await state.set_state(Compose.confirm)
    await bot.send_message(chat_id, _("Preview, exactly as members will see it:"))
    content: dict[str, Any] = data["content"]
    for language, message in content.items():
        if language != "default":
            await bot.send_message(chat_id, _("Version in {language}:").format(language=NAMES[language]))
        await send_variant(bot, chat_id, message, markup_for(message))
    total = sum(counts.values())
    by_language = ", ".join(f"{NAMES.get(code, code)}: {count}" for code, count in sorted(counts.items()))
    buttons = [
        [
            InlineKeyboardButton(text=_("🚀 Send now"), callback_data=ComposeAction(action=ComposeStep.SEND).pack()),
            InlineKeyboardButton(
                text=_("🕒 Schedule"), callback_data=ComposeAction(action=ComposeStep.SCHEDULE).pack()
            ),
            InlineKeyboardButton(text=_("✖ Cancel"), callback_data=ComposeAction(action=ComposeStep.CANCEL).pack()),
        ]
    ]
    await bot.send_message(
        chat_id,
        ngettext(
            "Audience: <b>{total}</b> member ({languages}).", "Audience: <b>{total}</b> members ({languages}).", total
        ).format(total=total, languages=by_language or "—")
        + ("\n" + holdout_note(holdout) if holdout else ""),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons),
    )


async def got_time(
    message: Message,
    session: DbSession,
    state: FSMContext,
    program: Program,
    bot: Bot,
    broadcaster: Broadcaster,
    clock: Callable[[], datetime],
) -> None:
    now = clock()
    try:
        local = broadcasts.send_time(message.text or "", program.tz, now)
    except broadcasts.BadTime as bad:
        if bad.problem is broadcasts.TimeProblem.PASSED:
            await message.answer(time_passed())
        else:
            await message.answer(_("Please send the time as YYYY-MM-DD HH:MM, e.g. 2026-12-24 10:00."))
        return
    await _create(bot, message.chat.id, session, state, program, broadcaster, now, local)


async def _create(
    bot: Bot,
    chat_id: int,
    session: DbSession,
    state: FSMContext,
    program: Program,
    broadcaster: Broadcaster,
    now: datetime,
    send_at: datetime | None,
) -> None:
    data = await state.get_data()
    if "segment" not in data:
        return
    await state.clear()  # a second tap on "Send now" finds no draft: one broadcast
    broadcast = await broadcasts.create(
        session,
        program,
        created_by=chat_id,
        content=data["content"],
        segment=Segment(**data["segment"]),
        now=now,
        send_at=send_at,
        status_chat_id=chat_id,
        holdout=float(data.get("holdout", 0)),
    )
    assert broadcast.id is not None
    if send_at is None:
        text = progress_text(broadcast.id, await broadcasts.progress(session, broadcast.id), 0, final=False)
    else:
        text = ngettext(
            "🕒 Broadcast #{id} to {total} member is scheduled for {when}.",
            "🕒 Broadcast #{id} to {total} members is scheduled for {when}.",
            broadcast.total,
        ).format(id=broadcast.id, total=broadcast.total, when=when(send_at, program.tz, get_i18n().current_locale))
    status = await bot.send_message(chat_id, text)
    await broadcasts.set_status_message(session, broadcast.id, chat_id, status.message_id)
    if send_at is None:
        broadcaster.kick(bot)


async def list_broadcasts(message: Message, session: DbSession, program: Program) -> None:
    rows = await broadcasts.recent(session)
    if not rows:
        await message.answer(_("No broadcasts yet. Start one with /broadcast."))
        return
    lines, buttons = [_("📣 <b>Broadcasts</b>")], []
    for broadcast, progress in rows:
        lines.append(
            _("#{id} {status} · sent {sent} of {total} · failed {failed} · blocked {blocked}").format(
                id=broadcast.id,
                status=status_name(broadcast.status),
                sent=progress.of(broadcasts.Outcome.SENT),
                total=broadcast.total,
                failed=progress.of(broadcasts.Outcome.FAILED),
                blocked=progress.of(broadcasts.Outcome.BLOCKED),
            )
            + (" · " + _("holdout {share}").format(share=f"{broadcast.holdout:.0%}") if broadcast.holdout else "")
        )
        row = []
        if broadcast.status in ("running", "scheduled"):
            row.append(
                InlineKeyboardButton(
                    text=_("⏸ Pause #{id}").format(id=broadcast.id),
                    callback_data=BroadcastControl(broadcast_id=broadcast.id or 0, to=broadcasts.Status.PAUSED).pack(),
                )
            )
        if broadcast.status == "paused":
            row.append(
                InlineKeyboardButton(
                    text=_("▶ Resume #{id}").format(id=broadcast.id),
                    callback_data=BroadcastControl(broadcast_id=broadcast.id or 0, to=broadcasts.Status.RUNNING).pack(),
                )
            )
        if broadcast.status in ("running", "scheduled", "paused"):
            row.append(
                InlineKeyboardButton(
                    text=_("✖ Cancel #{id}").format(id=broadcast.id),
                    callback_data=BroadcastControl(
                        broadcast_id=broadcast.id or 0, to=broadcasts.Status.CANCELLED
                    ).pack(),
                )
            )
        if row:
            buttons.append(row)
    await message.answer(
        "\n".join(lines), reply_markup=InlineKeyboardMarkup(inline_keyboard=buttons) if buttons else None
    )


async def control(
    query: CallbackQuery,
    callback_data: BroadcastControl,
    session: DbSession,
    broadcaster: Broadcaster,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    target = callback_data.to
    if target not in (
        broadcasts.Status.PAUSED,
        broadcasts.Status.RUNNING,
        broadcasts.Status.CANCELLED,
    ) or not await broadcasts.change(session, callback_data.broadcast_id, target, clock(), actor_id=query.from_user.id):
        await query.answer(
            _("Broadcast #{id} cannot be changed that way now.").format(id=callback_data.broadcast_id), show_alert=True
        )
        return
    await query.answer(
        _("Broadcast #{id} is now {status}.").format(id=callback_data.broadcast_id, status=status_name(target))
    )
    if target is broadcasts.Status.RUNNING:
        broadcaster.kick(bot)


async def resend_unknown(
    query: CallbackQuery,
    callback_data: ResendUnknown,
    session: DbSession,
    broadcaster: Broadcaster,
    bot: Bot,
    clock: Callable[[], datetime],
) -> None:
    count = await broadcasts.resend_unknown(session, callback_data.broadcast_id, clock())
    if not count:  # a second tap, or another admin was quicker
        await query.answer(_("Nothing left to resend for broadcast #{id}.").format(id=callback_data.broadcast_id))
        return
    await query.answer(
        ngettext(
            "Sending broadcast #{id} again to the {count} member whose copy was unknown.",
            "Sending broadcast #{id} again to the {count} members whose copy was unknown.",
            count,
        ).format(id=callback_data.broadcast_id, count=count),
        show_alert=True,
    )
    if isinstance(query.message, Message):
        await drop_keyboard(query.message)
    broadcaster.kick(bot)


async def stop_promotions(query: CallbackQuery, session: DbSession, member: MemberView) -> None:
    await privacy.set_promotions(session, member.id, False)
    await query.answer(_("Promotions are off. You can turn them on again in /settings."), show_alert=True)


def router() -> Router:
    router = Router(name="broadcast")
    router.callback_query.register(stop_promotions, StopPromotions.filter(), IsMember())
    admins = Router(name="broadcast-admin")
    admins.message.filter(HasPermission(Permission.BROADCAST))
    admins.callback_query.filter(HasPermission(Permission.BROADCAST))
    admins.message.register(start, slash("broadcast"))
    admins.message.register(list_broadcasts, slash("broadcasts"))
    admins.callback_query.register(compose_action, ComposeAction.filter())
    admins.callback_query.register(control, BroadcastControl.filter())
    admins.callback_query.register(resend_unknown, ResendUnknown.filter())
    # After the admins' router: the same buttons pressed by anyone else.
    refusals = Router(name="broadcast-refusals")
    refusals.callback_query.register(refuse_button, ComposeAction.filter())
    refusals.callback_query.register(refuse_button, BroadcastControl.filter())
    refusals.callback_query.register(refuse_button, ResendUnknown.filter())
    router.include_routers(admins, refusals)
    return router


def input_router() -> Router:
    """The admin's answers while composing; after every feature so commands (and /cancel) still work."""
    router = Router(name="broadcast-input")
    router.message.filter(HasPermission(Permission.BROADCAST), NotCommand())
    router.message.register(got_message, Compose.message)
    router.message.register(got_segment, Compose.segment)
    router.message.register(got_time, Compose.time)
    return router
