"""The support desk: members' threads in the staff chat, and staff answers back to members.

Three set-ups, chosen by ``LOYALTY_SUPPORT_CHAT_ID``:

- a forum supergroup: one forum topic per member (named with their name and code), opened with a member card;
  the member's messages are copied in (copies, not forwards, so privacy settings cannot hide the sender) and
  whatever support writes in the topic is copied to the member, who never sees staff accounts. ``/close`` in
  the topic closes the thread and the topic; the member writing again reopens both.
- an ordinary group: each member message is posted with a header naming the member; a staff reply to it (or to
  the header) is relayed. ``/close`` as a reply closes that thread.
- none: each member message is sent to the support staff and admins in their private chats, with a button to
  answer it; ``/inbox``, ``/thread <thread>``, ``/reply <thread> <text>`` and ``/close <thread>`` work there too.

Only support, admin and owner roles answer or close; anyone else in the staff chat is ignored.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import CommandObject, Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from handlers.filters import HasPermission, NotCommand, slash
from loyalty import feedback, stores
from loyalty.numbers import RowId, whole
from loyalty.privacy import can_message
from loyalty.program import Program
from loyalty.purchases import from_minor
from loyalty.roles import Permission, StaticRoles, can, staff_roles
from notifications.refusals import unknown_store
from notifications.support import INBOX_LINES, waited
from notifications.texts import day, locale_of, money, speaking, tell, when
from storage.database import DbSession
from storage.models import Member, Thread

log = logging.getLogger(__name__)

TAGS = re.compile(r"<[^>]+>")
# What a member may send to support: everything Telegram can copy that is a message, not an action.
RELAYABLE = ("text", "photo", "voice", "video", "video_note", "document", "audio", "sticker", "animation")


def _preview(text: str | None, kind: str, limit: int) -> str:
    """A stored message (HTML) as plain text cut to ``limit`` characters, or its kind ("[voice]") if it has none."""
    body = html.unescape(TAGS.sub("", text)) if text else f"[{kind}]"
    return body if len(body) <= limit else body[:limit] + "…"


class Mode(StrEnum):
    FORUM = "forum"
    GROUP = "group"
    NONE = "none"


class Desk:
    """Where threads go, found out once from Telegram (whether the support chat is a forum); without a support
    chat, to the private chats of whoever may answer (``roles``: settings, and grants in the database)."""

    def __init__(self, chat_id: int | None, roles: StaticRoles | None = None) -> None:
        self.chat_id = chat_id
        self.roles = roles or StaticRoles()
        self._mode: Mode | None = None if self.chat_id is not None else Mode.NONE

    async def mode(self, bot: Bot) -> Mode:
        if self._mode is None:
            assert self.chat_id is not None
            try:
                chat = await bot.get_chat(self.chat_id)
            except Exception:  # any failure (an API error, an answer aiogram cannot parse) means the same
                log.exception("cannot read the support chat %s; treating it as an ordinary group", self.chat_id)
                return Mode.GROUP
            self._mode = Mode.FORUM if chat.is_forum else Mode.GROUP
        return self._mode


class Csat(CallbackData, prefix="csat"):
    thread_id: RowId
    rating: int


class AnswerThread(CallbackData, prefix="ans"):
    thread_id: RowId


class SupportInput(StatesGroup):
    answering = State()  # the next message is the answer to the thread in the state's data


def content_kind(message: Message) -> str | None:
    return next((kind for kind in RELAYABLE if getattr(message, kind, None)), None)


def _card(facts: feedback.MemberFacts, program: Program, thread: Thread) -> str:
    member = facts.member
    locale = locale_of(program.staff_language)
    tier = program.tiers.level(member.tier)
    lines = [
        _("👤 <b>{name}</b> · <code>{code}</code> · thread #{thread}").format(
            name=html.escape(_full_name(member)), code=member.code, thread=thread.id
        ),
        _("Tier: {tier} · Points: {points}").format(
            tier=html.escape(tier.name_in(program.staff_language)) if tier else "—", points=member.points
        ),
    ]
    if facts.last_purchase is not None:
        lines.append(
            _("Last purchase: {amount} on {day}").format(
                amount=money(from_minor(facts.last_purchase.amount_minor, program), program.currency, locale),
                day=day(facts.last_purchase.created_at, program.tz, locale),
            )
        )
    else:
        lines.append(_("Last purchase: none yet"))
    lines.append(
        _("NPS: {score} · Open coupons: {coupons}").format(
            score="—" if facts.nps is None else facts.nps, coupons=facts.open_coupons
        )
    )
    if (usual := program.store(facts.usual_store)) is not None:
        lines.append(_("Buys most at: {store}").format(store=html.escape(usual.name_in(program.staff_language))))
    if (tagged := program.store(thread.store)) is not None:
        lines.append(_("Thread about: {store}").format(store=html.escape(tagged.name_in(program.staff_language))))
    return "\n".join(lines)


def _full_name(member: Member) -> str:
    name = " ".join(part for part in (member.first_name, member.last_name) if part) or "—"
    return f"{name} (@{member.username})" if member.username else name


def _topic_name(member: Member) -> str:
    return f"{member.first_name or '—'} · {member.code}"[:128]


async def _topic(bot: Bot, desk: Desk, session: DbSession, member: Member, *, reopened: bool) -> int:
    """The member's forum topic, created on their first thread and reopened with later ones."""
    assert desk.chat_id is not None and member.id is not None
    if member.support_topic_id is not None:
        if reopened:
            try:
                await bot.reopen_forum_topic(desk.chat_id, member.support_topic_id)
            except TelegramBadRequest as exc:
                if "TOPIC_NOT_MODIFIED" not in exc.message:
                    raise
        return member.support_topic_id
    topic = await bot.create_forum_topic(desk.chat_id, _topic_name(member))
    theirs = await feedback.set_topic(session, member.id, topic.message_thread_id)
    if theirs != topic.message_thread_id:  # another message of the same album made one first
        await bot.delete_forum_topic(desk.chat_id, topic.message_thread_id)
    member.support_topic_id = theirs
    return theirs


async def _post(bot: Bot, desk: Desk, session: DbSession, thread: Thread, text: str, topic: int | None) -> None:
    assert desk.chat_id is not None and thread.id is not None
    sent = await bot.send_message(desk.chat_id, text, message_thread_id=topic)
    await feedback.remember_post(session, thread.id, desk.chat_id, sent.message_id)


async def relay_to_staff(
    bot: Bot,
    desk: Desk,
    session: DbSession,
    i18n: I18n,
    program: Program,
    received: feedback.Received,
    *,
    source: Message | None = None,
    note: str | None = None,
    now: datetime,
) -> None:
    """Show staff a member's message (``source``, copied) or a bot-written ``note`` about the thread."""
    mode = await desk.mode(bot)
    if received.message is None:
        return
    if mode is Mode.NONE:
        await _tell_staff_privately(bot, desk, session, i18n, program, received, note)
        return
    assert desk.chat_id is not None
    thread = received.thread
    facts = await feedback.facts(session, thread.member_id, now)
    with speaking(i18n, program.staff_language):
        card = _card(facts, program, thread)
        header = _("💬 From {name} · <code>{code}</code> · thread #{thread}").format(
            name=html.escape(facts.member.first_name or "—"), code=facts.member.code, thread=thread.id
        )
    try:
        topic = None
        if mode is Mode.FORUM:
            topic = await _topic(bot, desk, session, facts.member, reopened=received.opened)
            if received.opened:
                await _post(bot, desk, session, thread, card, topic)
        elif received.opened:
            header = f"{card}\n\n{header}"
        if note is not None:
            await _post(bot, desk, session, thread, note if mode is Mode.FORUM else f"{header}\n\n{note}", topic)
        elif source is not None:
            if mode is Mode.GROUP:
                await _post(bot, desk, session, thread, header, None)
            copied = await bot.copy_message(desk.chat_id, source.chat.id, source.message_id, message_thread_id=topic)
            assert thread.id is not None
            await feedback.remember_post(session, thread.id, desk.chat_id, copied.message_id)
    except TelegramAPIError:
        # The thread is stored either way; /inbox still shows it.
        log.exception("could not relay thread %s to the support chat", thread.id)


async def _tell_staff_privately(
    bot: Bot,
    desk: Desk,
    session: DbSession,
    i18n: I18n,
    program: Program,
    received: feedback.Received,
    note: str | None,
) -> None:
    """No support chat: whoever may answer learns of the message in their private chat, with a button to answer,
    so nothing waits unseen until someone thinks of /inbox."""
    thread, message = received.thread, received.message
    assert message is not None and thread.id is not None
    member = await feedback.member_of(session, thread)
    staff = [
        tid for tid, role in (await staff_roles(session, desk.roles)).items() if can(role, Permission.ANSWER_FEEDBACK)
    ]
    preview = _preview(note if note is not None else message.text, message.kind, feedback.PREVIEW * 3)
    with speaking(i18n, program.staff_language):
        first = _("🆕 New thread") if received.opened else _("💬 In an open thread")
        text = "\n".join(
            [
                _("{what} #{thread} from {name} (<code>{code}</code>):").format(
                    what=first, thread=thread.id, name=html.escape(member.first_name or "—"), code=member.code
                ),
                html.escape(preview),
                "",
                html.escape(_("See a whole thread with /thread <thread>; answer with /reply <thread> <text>.")),
            ]
        )
        markup = InlineKeyboardMarkup(
            inline_keyboard=[
                [InlineKeyboardButton(text=_("✍️ Answer"), callback_data=AnswerThread(thread_id=thread.id).pack())]
            ]
        )
    for telegram_id in staff:
        try:
            await bot.send_message(telegram_id, text, reply_markup=markup)
        except TelegramAPIError:  # one unreachable staff member must not keep the others from hearing
            log.warning("could not tell staff %s about thread %s", telegram_id, thread.id, exc_info=True)


async def start_answer(
    query: CallbackQuery, callback_data: AnswerThread, session: DbSession, state: FSMContext
) -> None:
    found = await feedback.get_thread(session, callback_data.thread_id)
    if found is None or not isinstance(query.message, Message):
        await query.answer(_("This button is no longer valid."), show_alert=True)
        return
    _thread, member = found
    await state.set_state(SupportInput.answering)
    await state.update_data(thread_id=callback_data.thread_id)
    await query.answer()
    await query.message.answer(
        _("Type your answer to {name} (thread #{thread}). /cancel to stop.").format(
            name=html.escape(member.first_name or "—"), thread=callback_data.thread_id
        )
    )


async def typed_answer(
    message: Message, session: DbSession, bot: Bot, state: FSMContext, clock: Callable[[], datetime]
) -> None:
    thread_id = (await state.get_data()).get("thread_id")
    await state.clear()
    if not isinstance(thread_id, int) or not message.text:
        await message.answer(_("Please type the answer as text, or /cancel."))
        return
    await _send_reply(message, session, bot, clock, thread_id, message.text)


class InStaffChat(Filter):
    async def __call__(self, message: Message, desk: Desk) -> bool:
        return desk.chat_id is not None and message.chat.id == desk.chat_id


async def _thread_for(message: Message, session: DbSession, desk: Desk, bot: Bot) -> Thread | None:
    if await desk.mode(bot) is Mode.FORUM:
        if message.message_thread_id is None or not message.is_topic_message:
            return None
        return await feedback.thread_by_topic(session, message.message_thread_id)
    if message.reply_to_message is None:
        return None
    return await feedback.thread_by_staff_post(session, message.chat.id, message.reply_to_message.message_id)


async def staff_answers(
    message: Message, session: DbSession, desk: Desk, bot: Bot, clock: Callable[[], datetime]
) -> None:
    """Whatever support writes in a member's topic (or in reply to their message) goes to the member."""
    kind = content_kind(message)
    thread = await _thread_for(message, session, desk, bot)
    if thread is None or kind is None or thread.id is None:
        return  # staff talking among themselves
    await _answer(message, session, bot, thread, kind, clock())


async def _answer(message: Message, session: DbSession, bot: Bot, thread: Thread, kind: str, now: datetime) -> None:
    assert thread.id is not None and message.from_user is not None
    member = await feedback.member_of(session, thread)
    stored = await feedback.staff_says(
        session,
        thread.id,
        source_key=f"s:{message.chat.id}:{message.message_id}",
        kind=kind,
        text=message.html_text if (message.text or message.caption) else None,
        author_id=message.from_user.id,
        now=now,
    )
    if stored is None:
        return  # a redelivered update: relayed already
    if not can_message(member):
        await message.reply(_("⚠️ Not delivered: the member blocked the bot or erased their data."))
        return
    try:
        await bot.copy_message(member.chat_id, message.chat.id, message.message_id)
    except TelegramAPIError:
        log.warning("could not relay a staff answer to member %s", member.id, exc_info=True)
        await message.reply(_("⚠️ Not delivered: Telegram refused the message to the member."))


async def close_here(
    message: Message,
    command: CommandObject,
    session: DbSession,
    desk: Desk,
    bot: Bot,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    """/close in a member's topic, or as a reply to their message in an ordinary group."""
    thread = await _thread_for(message, session, desk, bot)
    if thread is None:
        await message.reply(_("Use /close in a member's topic, or as a reply to their message."))
        return
    await _close(message, session, desk, bot, i18n, thread, clock())


async def _close(
    message: Message, session: DbSession, desk: Desk, bot: Bot, i18n: I18n, thread: Thread, now: datetime
) -> None:
    assert thread.id is not None
    if not await feedback.close(session, thread.id, now):
        await message.answer(_("Thread #{thread} is already closed.").format(thread=thread.id))
        return
    member = await feedback.member_of(session, thread)
    await message.answer(
        _("✅ Thread #{thread} closed. The member was asked to rate the answer.").format(thread=thread.id)
    )
    if await desk.mode(bot) is Mode.FORUM and member.support_topic_id is not None and desk.chat_id is not None:
        try:
            await bot.close_forum_topic(desk.chat_id, member.support_topic_id)
        except TelegramBadRequest as exc:
            if "TOPIC_NOT_MODIFIED" not in exc.message:
                raise
    stars = [
        InlineKeyboardButton(text="⭐" * rating, callback_data=Csat(thread_id=thread.id, rating=rating).pack())
        for rating in range(1, 6)
    ]
    await tell(
        bot,
        i18n,
        member,
        lambda: _("Our team has closed this conversation. How would you rate the answer you got?"),
        reply_markup=InlineKeyboardMarkup(inline_keyboard=[stars[:3], stars[3:]]),
    )


# --- without a support chat: the inbox in a private chat -------------------------------------------------------


async def inbox(message: Message, session: DbSession, program: Program, clock: Callable[[], datetime]) -> None:
    now = clock()
    lines = await feedback.inbox(session, now, timedelta(minutes=program.support.response_target_minutes))
    if not lines:
        await message.answer(_("📭 No open threads."))
        return
    text = [
        _("📬 <b>Open threads</b> (target: first answer within {minutes} min)").format(
            minutes=program.support.response_target_minutes
        ),
        "",
    ]
    for line in lines[:INBOX_LINES]:
        thread = line.thread
        state = (
            _("waiting {time}").format(time=waited(now - thread.waiting_since))
            if thread.waiting_since
            else _("answered")
        )
        flag = "⚠️ " if line.overdue else ""
        preview = ""
        if line.last is not None:
            # Stored as HTML: shown as plain text, cut to a preview.
            preview = " — " + html.escape(_preview(line.last.text, line.last.kind, feedback.PREVIEW))
        text.append(
            f"{flag}#{thread.id} {html.escape(line.member.first_name or '—')} "
            f"(<code>{line.member.code}</code>) · {state}{preview}"
        )
    if len(lines) > INBOX_LINES:
        text.append(_("…and {count} more.").format(count=len(lines) - INBOX_LINES))
    text += ["", html.escape(_("See a whole thread with /thread <thread>; answer with /reply <thread> <text>."))]
    await message.answer("\n".join(text))


THREAD_MESSAGES = 20  # the latest, as much as one Telegram message holds


async def show_thread(
    message: Message, command: CommandObject, session: DbSession, program: Program, i18n: I18n
) -> None:
    """/thread <id>: the whole conversation (its latest messages), where /inbox shows only the last one.
    /thread <id> store <key|none>: tag it with the store it is about."""
    words = (command.args or "").split()
    if len(words) == 3 and words[1].lower() == "store" and program.stores:
        await _tag_store(message, session, program, i18n, words[0], words[2])
        return
    thread_id = whole((command.args or "").strip().lstrip("#"))
    found = await feedback.get_thread(session, thread_id) if thread_id is not None else None
    if thread_id is None or found is None:
        await message.answer(
            _("No thread #{thread}.").format(thread=html.escape((command.args or "").strip()[:20]))
            if command.args
            else _("Usage: {usage}").format(usage=html.escape(_("/thread <thread>")))
        )
        return
    thread, member = found
    shown, total = await feedback.messages_of(session, thread_id, THREAD_MESSAGES)
    lines = [
        _("💬 <b>Thread #{thread}</b> with {name} (<code>{code}</code>)").format(
            thread=thread_id, name=html.escape(member.first_name or "—"), code=member.code
        )
    ]
    language = i18n.current_locale.replace("_", "-")
    if (tagged := program.store(thread.store)) is not None:
        lines.append(_("Thread about: {store}").format(store=html.escape(tagged.name_in(language))))
    if total > len(shown):
        lines.append(_("(the latest {shown} of {total} messages)").format(shown=len(shown), total=total))
    locale = i18n.current_locale
    for item in shown:
        who = html.escape(member.first_name or "—") if item.direction == "in" else _("Staff")
        body = _preview(item.text, item.kind, feedback.PREVIEW * 3)
        lines.append(f"{when(item.created_at, program.tz, locale)} · <b>{who}</b>: {html.escape(body)}")
    lines += ["", html.escape(_("Answer with /reply <thread> <text>, close with /close <thread>."))]
    await message.answer("\n".join(lines))


async def _tag_store(message: Message, session: DbSession, program: Program, i18n: I18n, typed: str, key: str) -> None:
    thread_id, language = whole(typed.lstrip("#")), i18n.current_locale.replace("_", "-")
    untag = key.lower() in ("none", "-")
    try:
        store = None if untag else stores.checked(program, key.lower())
    except stores.UnknownStore:
        await message.answer(html.escape(unknown_store(program, key, language)))
        return
    if thread_id is None or not await feedback.tag_store(session, thread_id, store):
        await message.answer(_("No thread #{thread}.").format(thread=html.escape(typed[:20])))
        return
    rule = program.store(store)
    if rule is None:
        await message.answer(_("Thread #{thread} is about no particular store now.").format(thread=thread_id))
    else:
        await message.answer(
            _("Thread #{thread} is about {store} now.").format(
                thread=thread_id, store=html.escape(rule.name_in(language))
            )
        )


async def reply_command(
    message: Message, command: CommandObject, session: DbSession, bot: Bot, clock: Callable[[], datetime]
) -> None:
    parts = (command.args or "").split(maxsplit=1)
    thread_id = whole(parts[0].lstrip("#")) if len(parts) == 2 else None
    if thread_id is None:
        await message.answer(_("Usage: {usage}").format(usage=html.escape(_("/reply <thread> <text>"))))
        return
    await _send_reply(message, session, bot, clock, thread_id, parts[1], typed_ref=parts[0])


async def _send_reply(
    message: Message,
    session: DbSession,
    bot: Bot,
    clock: Callable[[], datetime],
    thread_id: int,
    answer: str,
    typed_ref: str | None = None,
) -> None:
    """Store staff's answer in the thread and deliver it to the member (/reply, and the ✍️ Answer button)."""
    found = await feedback.get_thread(session, thread_id)
    if found is None:
        await message.answer(_("No thread #{thread}.").format(thread=html.escape(typed_ref or str(thread_id))))
        return
    thread, member = found
    assert thread.id is not None and message.from_user is not None
    stored = await feedback.staff_says(
        session,
        thread.id,
        source_key=f"s:{message.chat.id}:{message.message_id}",
        kind="text",
        text=html.escape(answer),
        author_id=message.from_user.id,
        now=clock(),
    )
    if stored is None:
        return
    if not can_message(member):
        await message.answer(_("⚠️ Not delivered: the member blocked the bot or erased their data."))
        return
    try:
        await bot.send_message(member.chat_id, "💬 " + html.escape(answer))
    except TelegramAPIError:
        log.warning("could not deliver a reply to member %s", member.id, exc_info=True)
        await message.answer(_("⚠️ Not delivered: Telegram refused the message to the member."))
        return
    await message.answer(
        _("✅ Sent to {name} (thread #{thread}).").format(name=html.escape(member.first_name or "—"), thread=thread.id)
    )


async def close_command(
    message: Message,
    command: CommandObject,
    session: DbSession,
    desk: Desk,
    bot: Bot,
    i18n: I18n,
    clock: Callable[[], datetime],
) -> None:
    ref = (command.args or "").strip().lstrip("#")
    thread_id = whole(ref)
    found = await feedback.get_thread(session, thread_id) if thread_id is not None else None
    if found is None:
        await message.answer(_("Usage: {usage}").format(usage=html.escape(_("/close <thread>"))))
        return
    await _close(message, session, desk, bot, i18n, found[0], clock())


def staff_chat_router() -> Router:
    """Messages in the support chat: answers and /close from support roles; everyone else is ignored."""
    router = Router(name="support-chat")
    router.message.filter(InStaffChat(), HasPermission(Permission.ANSWER_FEEDBACK))
    router.message.register(close_here, slash("close"))
    router.message.register(staff_answers, NotCommand())
    return router


def router() -> Router:
    """The private-chat inbox for support users (the only way to answer when there is no support chat)."""
    router = Router(name="support-inbox")
    router.message.filter(HasPermission(Permission.ANSWER_FEEDBACK))
    router.message.register(inbox, slash("inbox"))
    router.message.register(show_thread, slash("thread"))
    router.message.register(reply_command, slash("reply"))
    router.message.register(close_command, slash("close"))
    router.callback_query.register(start_answer, AnswerThread.filter())
    return router


def input_router() -> Router:
    """Staff typing an answer after the ✍️ Answer button (with the other pending questions, after the commands)."""
    router = Router(name="support-answer")
    router.message.filter(HasPermission(Permission.ANSWER_FEEDBACK), NotCommand())
    router.message.register(typed_answer, SupportInput.answering)
    return router
