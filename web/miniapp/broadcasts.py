"""The console's Broadcasts, for admins: compose a promotion (formatted text, a photo, a link button, a version per
language), pick its members with the chat's filters while the audience count follows, preview it, send it now or
at a time, and watch it go out with pause / resume / cancel.

Every endpoint checks on the server that the viewer is an admin (``Permission.MANAGE_STAFF``) who may broadcast
(``Permission.BROADCAST``, what the chat's /broadcast requires). A message, a segment and a time are read by the
``loyalty.broadcasts`` and ``loyalty.segments`` functions the chat's /broadcast uses, and a broadcast is created,
paused, resumed and cancelled by the same calls, so it reaches members exactly as one composed in the chat, and
every change is in the audit log with who made it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

from aiogram.exceptions import TelegramAPIError
from aiogram.types import BufferedInputFile
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext
from aiohttp import web
from markupsafe import Markup, escape
from pydantic import Field

from loyalty import broadcasts
from loyalty.broadcasts import BadContent, BadTime, Outcome, Status, TimeProblem
from loyalty.holdouts import parse_share
from loyalty.members import LANGUAGES
from loyalty.program import HOLDOUT_MAX
from loyalty.roles import Permission
from loyalty.segments import NPS_RANGES, BadSegment, Segment, segment_of
from notifications.broadcasting import status_name
from notifications.texts import N_, content_problem, holdout_problem, locale_of, segment_problem, time_passed, when
from storage.models import Broadcast
from web.miniapp.core import (
    LANGUAGE,
    VIEWER,
    Action,
    Model,
    Refused,
    Screen,
    bad_input,
    json_of,
    mount,
    read,
    require,
)
from web.miniapp.member import KEY, LANGUAGE_NAMES
from web.services import SERVICES

MAX_PHOTO = 5 * 1024 * 1024  # bytes; Telegram takes photos up to 10 MB
MAX_COMPOSED = 64 * 1024  # a create's body: three versions of up to 4,096 characters, with their formatting
PHOTO_TYPES = {b"\xff\xd8\xff": "jpg", b"\x89PNG\r\n\x1a\n": "png"}
FILE_ID = r"^[A-Za-z0-9_-]{8,256}$"
VERSIONS = ("default", *(code for code in LANGUAGES if code != "en"))  # the chat's: English is the default's
NPS_NAMES = {"promoter": N_("Promoters (9–10)"), "passive": N_("Passives (7–8)"), "detractor": N_("Detractors (0–6)")}
FINAL = (Status.DONE, Status.CANCELLED)


def _admin(request: web.Request) -> None:
    """Admins who may broadcast, as the chat's /broadcast requires; checked on every request."""
    require(request, Permission.MANAGE_STAFF)
    require(request, Permission.BROADCAST)


def _segment(filters: Iterable[tuple[str, str]], request: web.Request) -> Segment:
    """The form's filters as the chat's words: an empty field is no filter; the birthday box is ``birthday``."""
    pairs = []
    for key, value in filters:
        value = value.strip()
        if not value:
            continue
        if key == "birthday":
            value = ""
        pairs.append((key, value, f"{key}={value}" if value else key))
    try:
        return segment_of(pairs, request.app[SERVICES].program)
    except BadSegment as bad:
        raise Refused(400, "invalid_segment", segment_problem(bad, escape=False)) from bad


def _plain(text: str) -> str:
    """A stored message as one line of text, for the list."""
    shown = Markup(text).striptags()
    return shown if len(shown) <= 80 else shown[:79] + "…"


# ------------------------------------------------------------------------------------------------ the list


class BroadcastRowOut(Model):
    id: int
    status: str = Field(description="scheduled, running, paused, done or cancelled")
    status_name: str
    total: int
    sent: int
    processed: int = Field(description="Sent, failed or blocked: the copies that are through")
    excerpt: str
    when: str = Field(description="When it was, or is, to be sent")
    holdout: str | None = Field(default=None, description="The randomized holdout kept back, e.g. 'holdout 10%'")


class BroadcastsOut(Model):
    broadcasts: list[BroadcastRowOut]


async def load_broadcasts(request: web.Request) -> BroadcastsOut:
    _admin(request)
    services = request.app[SERVICES]
    locale = locale_of(request[LANGUAGE])
    async with services.sessions() as session:
        rows = await broadcasts.recent(session, 20)
    out = []
    for broadcast, progress in rows:
        content = json.loads(broadcast.content)
        first: dict[str, Any] = content.get("default") or next(iter(content.values()), {})
        out.append(
            BroadcastRowOut(
                id=broadcast.id or 0,
                status=broadcast.status,
                status_name=status_name(broadcast.status),
                total=broadcast.total,
                sent=progress.of(Outcome.SENT),
                processed=_processed(progress),
                excerpt=_plain(first.get("text", "")) or ("📷" if first.get("photo") else ""),
                when=when(broadcast.scheduled_at, services.program.tz, locale),
                holdout=_holdout(broadcast),
            )
        )
    return BroadcastsOut(broadcasts=out)


def _holdout(broadcast: Broadcast) -> str | None:
    # As the chat's /broadcasts says it.
    return _("holdout {share}").format(share=f"{broadcast.holdout:.0%}") if broadcast.holdout else None


def _processed(progress: broadcasts.Progress) -> int:
    return progress.of(Outcome.SENT) + progress.of(Outcome.FAILED) + progress.of(Outcome.BLOCKED)


# ------------------------------------------------------------------------------------------------ one broadcast


class VersionOut(Model):
    language: str = Field(description="default, or the language it is for")
    name: str
    html: str = Field(description="The text as Telegram HTML")
    photo: bool
    button: dict[str, str] | None


class ProgressOut(Model):
    id: int
    status: str
    status_name: str
    total: int
    sent: int
    failed: int
    blocked: int
    unknown: int
    remaining: int
    processed: int
    rate: float = Field(description="Messages a second, lately")
    holdout: str | None = Field(default=None, description="The randomized holdout kept back, e.g. 'holdout 10%'")
    seconds_left: int | None
    pace: str = Field(description="The rate and the time left, or when it starts, in words")
    can_pause: bool
    can_resume: bool
    can_cancel: bool
    versions: list[VersionOut]


async def load_broadcast(request: web.Request) -> ProgressOut:
    _admin(request)
    services = request.app[SERVICES]
    raw = request.query.get("id", "")
    if not raw.isdigit() or len(raw) > 12:
        raise bad_input()
    now = services.clock()
    async with services.sessions() as session:
        broadcast = await broadcasts.get(session, int(raw))
        if broadcast is None or broadcast.id is None:
            raise Refused(404, "not_found", _("No broadcast #{id}.").format(id=raw))
        progress = await broadcasts.progress(session, broadcast.id)
        rate = await broadcasts.pace(session, broadcast, now) if broadcast.status == Status.RUNNING else 0.0
    status = Status(broadcast.status)
    left = int(progress.remaining / rate) if rate > 0 and status is Status.RUNNING else None
    return ProgressOut(
        id=broadcast.id,
        status=status.value,
        status_name=status_name(status),
        total=broadcast.total,
        sent=progress.of(Outcome.SENT),
        failed=progress.of(Outcome.FAILED),
        blocked=progress.of(Outcome.BLOCKED),
        unknown=progress.of(Outcome.UNKNOWN),
        remaining=progress.remaining,
        processed=_processed(progress),
        rate=round(rate, 1),
        holdout=_holdout(broadcast),
        seconds_left=left,
        pace=_pace(request, broadcast, rate, left),
        can_pause=status in (Status.RUNNING, Status.SCHEDULED),
        can_resume=status is Status.PAUSED,
        can_cancel=status not in FINAL,
        versions=_versions(json.loads(broadcast.content)),
    )


def _pace(request: web.Request, broadcast: Broadcast, rate: float, left: int | None) -> str:
    program = request.app[SERVICES].program
    locale = locale_of(request[LANGUAGE])
    if broadcast.status == Status.SCHEDULED:
        return _("Starts {when}.").format(when=when(broadcast.scheduled_at, program.tz, locale))
    if broadcast.status in FINAL and broadcast.finished_at is not None:
        return _("Ended {when}.").format(when=when(broadcast.finished_at, program.tz, locale))
    if left is not None:
        return _("{rate:.1f} messages a second, about {seconds} s left").format(rate=rate, seconds=left)
    return ""


def _versions(content: dict[str, Any]) -> list[VersionOut]:
    out = []
    for language, message in content.items():
        try:
            shown, _length = broadcasts.formatted(message.get("text", ""))
        except BadContent:  # not written by variant_of (an older broadcast): shown as plain text
            shown = str(escape(message.get("text", "")))
        out.append(
            VersionOut(
                language=language,
                name=_("Default") if language == "default" else LANGUAGE_NAMES.get(language, language),
                html=shown,
                photo=bool(message.get("photo")),
                button=message.get("button"),
            )
        )
    return out


# ------------------------------------------------------------------------------------------------ compose


class AudienceOut(Model):
    total: int
    languages: dict[str, int] = Field(description="Members by language")
    text: str


async def load_audience(request: web.Request) -> AudienceOut:
    """How many members the filters in the query (the chat's: tier, inactive, active, birthday, lang, nps, points)
    reach now."""
    _admin(request)
    services = request.app[SERVICES]
    segment = _segment(request.query.items(), request)
    async with services.sessions() as session:
        counts = await broadcasts.audience(session, segment, services.program, services.clock())
    return _audience(counts)


def _audience(counts: dict[str, int]) -> AudienceOut:
    total = sum(counts.values())
    by_language = ", ".join(f"{LANGUAGE_NAMES.get(code, code)}: {count}" for code, count in sorted(counts.items()))
    text = ngettext("Audience: {total} member", "Audience: {total} members", total).format(total=total)
    return AudienceOut(total=total, languages=counts, text=f"{text} ({by_language})" if by_language else text)


class ChoiceOut(Model):
    key: str
    name: str


class ComposeOut(Model):
    versions: list[ChoiceOut] = Field(description="default, then a version for each other language")
    tiers: list[ChoiceOut]
    languages: list[ChoiceOut]
    nps: list[ChoiceOut]
    timezone: str
    earliest: str = Field(description="The program's local time now, as a datetime-local value")
    audience: AudienceOut
    max_text: int
    max_caption: int
    max_photo: int = Field(description="Bytes")
    holdout_max: int = Field(description="The largest holdout, in percent")


async def load_compose(request: web.Request) -> ComposeOut:
    _admin(request)
    services = request.app[SERVICES]
    program, language = services.program, request[LANGUAGE]
    now = services.clock()
    async with services.sessions() as session:
        counts = await broadcasts.audience(session, Segment(), program, now)
    return ComposeOut(
        versions=[
            ChoiceOut(key=v, name=_("Default") if v == "default" else LANGUAGE_NAMES.get(v, v)) for v in VERSIONS
        ],
        tiers=[ChoiceOut(key=t.name, name=t.name_in(language)) for t in program.tiers.levels],
        languages=[ChoiceOut(key=code, name=LANGUAGE_NAMES.get(code, code)) for code in LANGUAGES],
        nps=[ChoiceOut(key=kind, name=_(NPS_NAMES[kind])) for kind in NPS_RANGES],
        timezone=program.timezone,
        earliest=now.astimezone(program.tz).strftime("%Y-%m-%dT%H:%M"),
        audience=_audience(counts),
        max_text=broadcasts.MAX_TEXT,
        max_caption=broadcasts.MAX_CAPTION,
        max_photo=MAX_PHOTO,
        holdout_max=round(HOLDOUT_MAX * 100),
    )


class PhotoIn(Model):
    data: str = Field(max_length=MAX_PHOTO * 4 // 3 + 8, description="The image (JPEG or PNG), base64")


class PhotoOut(Model):
    message: str
    photo: str = Field(description="Its Telegram file_id, for a version's photo")


async def upload_photo(request: web.Request) -> web.Response:
    """A photo from the admin's phone goes to Telegram once, in a message to the admin (their copy), and is sent to
    members by the file_id Telegram gives it: as a photo the admin sends the chat's /broadcast is."""
    _admin(request)
    services = request.app[SERVICES]
    body = await read(request, PhotoIn, limit=MAX_PHOTO * 4 // 3 + 64)
    try:
        data = base64.b64decode(body.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_input() from exc
    kind = next((ext for magic, ext in PHOTO_TYPES.items() if data.startswith(magic)), None)
    if kind is None or len(data) > MAX_PHOTO:
        raise Refused(
            400, "invalid_photo", _("Please choose a JPEG or PNG photo of at most {mb} MB.").format(mb=MAX_PHOTO >> 20)
        )
    try:
        sent = await services.bot.send_photo(
            request[VIEWER].telegram_id,
            BufferedInputFile(data, f"broadcast.{kind}"),
            caption=_("📷 The photo for your broadcast."),
            disable_notification=True,
        )
    except TelegramAPIError as exc:
        raise Refused(
            409,
            "photo_refused",
            _("Telegram did not take the photo. Open the chat with the bot (press Start there), then try again."),
        ) from exc
    if not sent.photo:
        raise Refused(409, "photo_refused", _("Telegram did not take the photo. Please try another one."))
    return json_of(PhotoOut(message=_("Photo added."), photo=sent.photo[-1].file_id), 201)


class ButtonIn(Model):
    text: str = Field(max_length=200)
    url: str = Field(max_length=4096)


class VersionIn(Model):
    text: str = Field(default="", max_length=20_000, description="Telegram HTML: <b> <i> <u> <s> <a href> …")
    photo: str | None = Field(default=None, pattern=FILE_ID, description="From console/broadcast/photo")
    button: ButtonIn | None = None


class CreateIn(Model):
    key: str = Field(pattern=KEY, description="Generated by the page for this submission: a retry creates once")
    versions: dict[str, VersionIn] = Field(description="default, and optionally zh-Hans and zh-Hant")
    filters: dict[str, str] = Field(default_factory=dict, description="The chat's filters: tier, inactive, …")
    send_at: str | None = Field(default=None, max_length=32, description="Local YYYY-MM-DDTHH:MM; none sends now")
    holdout: str = Field(
        default="", max_length=16, description="A share kept back at random to measure against: 10% or 0.1; empty: none"
    )


class CreatedOut(Model):
    message: str
    id: int
    total: int
    replayed: bool


async def create(request: web.Request) -> web.Response:
    _admin(request)
    services = request.app[SERVICES]
    body = await read(request, CreateIn, limit=MAX_COMPOSED)
    if "default" not in body.versions or not set(body.versions) <= set(VERSIONS) or len(body.filters) > 16:
        raise bad_input()
    content: dict[str, Any] = {}
    for language in VERSIONS:  # the default first: members without a version of their own get it
        version = body.versions.get(language)
        if version is None or (language != "default" and not version.text.strip() and not version.photo):
            continue
        button = version.button.model_dump() if version.button and (version.button.text or version.button.url) else None
        try:
            content[language] = broadcasts.variant_of(version.text, photo=version.photo, button=button)
        except BadContent as bad:
            name = _("Default") if language == "default" else LANGUAGE_NAMES[language]
            raise Refused(400, "invalid_message", f"{name}: {content_problem(bad, escape=False)}") from bad
    segment = _segment(body.filters.items(), request)
    holdout = parse_share(body.holdout or "0")
    if holdout is None:
        raise Refused(400, "invalid_holdout", holdout_problem(body.holdout, escape=False))
    now = services.clock()
    program = services.program
    send_at = None
    if body.send_at:
        try:
            send_at = broadcasts.send_time(body.send_at, program.tz, now)
        except BadTime as bad:
            text = time_passed() if bad.problem is TimeProblem.PASSED else _("Please pick a date and a time.")
            raise Refused(400, "invalid_time", text) from bad
    actor = request[VIEWER].telegram_id
    key = f"app:{actor}:{body.key}"
    async with services.sessions() as session:
        replayed = await broadcasts.by_key(session, key) is not None
        broadcast = await broadcasts.create(
            session,
            program,
            created_by=actor,
            content=content,
            segment=segment,
            now=now,
            send_at=send_at,
            key=key,
            holdout=holdout,
        )
    assert broadcast.id is not None
    if replayed:
        message = _("Broadcast #{id} was already created.").format(id=broadcast.id)
    elif broadcast.status == Status.SCHEDULED:
        message = ngettext(
            "🕒 Broadcast #{id} to {total} member is scheduled for {when}.",
            "🕒 Broadcast #{id} to {total} members is scheduled for {when}.",
            broadcast.total,
        ).format(
            id=broadcast.id,
            total=broadcast.total,
            when=when(broadcast.scheduled_at, program.tz, locale_of(request[LANGUAGE])),
        )
    else:
        message = ngettext(
            "📣 Broadcast #{id} to {total} member is being sent.",
            "📣 Broadcast #{id} to {total} members is being sent.",
            broadcast.total,
        ).format(id=broadcast.id, total=broadcast.total)
        services.broadcaster.kick(services.bot)
    out = CreatedOut(message=message, id=broadcast.id, total=broadcast.total, replayed=replayed)
    return json_of(out, 200 if replayed else 201)


# ------------------------------------------------------------------------------------------------ pause, resume, cancel


class ChangeIn(Model):
    id: int = Field(ge=1, lt=2**63)


class ChangedOut(Model):
    message: str
    status: str


def _changer(to: Status) -> Any:
    async def change(request: web.Request) -> web.Response:
        _admin(request)
        services = request.app[SERVICES]
        body = await read(request, ChangeIn)
        async with services.sessions() as session:
            changed = await broadcasts.change(
                session, body.id, to, services.clock(), actor_id=request[VIEWER].telegram_id
            )
        if not changed:  # a second tap, another admin was quicker, or it has finished
            raise Refused(409, "not_now", _("Broadcast #{id} cannot be changed that way now.").format(id=body.id))
        if to is Status.RUNNING:
            services.broadcaster.kick(services.bot)
        message = _("Broadcast #{id} is now {status}.").format(id=body.id, status=status_name(to))
        return json_of(ChangedOut(message=message, status=to.value))

    return change


SCREENS = [
    Screen("console/broadcasts", load_broadcasts, "console_broadcasts.html", BroadcastsOut, "Recent broadcasts"),
    Screen(
        "console/broadcast", load_broadcast, "console_broadcast.html", ProgressOut, "One broadcast's progress (?id=)"
    ),
    Screen("console/broadcast/new", load_compose, "console_broadcast_new.html", ComposeOut, "Compose a broadcast"),
    Screen(
        "console/broadcast/audience",
        load_audience,
        "console_broadcast_audience.html",
        AudienceOut,
        "How many members the filters reach (?tier=&inactive=&active=&birthday=&lang=&nps=&points=)",
    ),
]
ACTIONS = [
    Action("console/broadcast/photo", upload_photo, PhotoIn, PhotoOut, "Upload a broadcast's photo to Telegram"),
    Action("console/broadcast/create", create, CreateIn, CreatedOut, "Send or schedule a broadcast (once per key)"),
    Action("console/broadcast/pause", _changer(Status.PAUSED), ChangeIn, ChangedOut, "Pause a broadcast"),
    Action("console/broadcast/resume", _changer(Status.RUNNING), ChangeIn, ChangedOut, "Resume a paused broadcast"),
    Action("console/broadcast/cancel", _changer(Status.CANCELLED), ChangeIn, ChangedOut, "Cancel a broadcast"),
]


def setup(app: web.Application, base: str) -> None:
    mount(app, base, SCREENS, ACTIONS)
